from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from accounts import api as accounts_api
from adapters.api import AdapterViewSet
from catalog.api import BaseModelViewSet
from hearth_platform.api_fallback import ApiNotFound
from keys.api import ApiKeyViewSet
from routes.api import RouteViewSet

router = SimpleRouter(trailing_slash=False)
router.register("keys", ApiKeyViewSet, basename="apikey")
router.register("account/members", accounts_api.MemberViewSet, basename="member")
router.register("models", BaseModelViewSet, basename="basemodel")
router.register("adapters", AdapterViewSet, basename="adapter")
router.register("routes", RouteViewSet, basename="route")

api_v1 = [
    path("auth/csrf", accounts_api.CsrfView.as_view(), name="auth-csrf"),
    path("auth/signup", accounts_api.SignupView.as_view(), name="auth-signup"),
    path("auth/login", accounts_api.LoginView.as_view(), name="auth-login"),
    path("auth/logout", accounts_api.LogoutView.as_view(), name="auth-logout"),
    path("me", accounts_api.MeView.as_view(), name="me"),
    path("account", accounts_api.AccountView.as_view(), name="account"),
    *router.urls,
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/v1/", include("billing.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("webapp.urls")),  # dashboard config + playground key, then the SPA for every other path
    re_path(r"^api/", ApiNotFound.as_view()),  # any other /api/ path: DRF's JSON 404, never Django's HTML page
]
