from django.urls import path, re_path

from webapp import api, views

urlpatterns = [
    path("api/v1/config", api.ConfigView.as_view(), name="dashboard-config"),
    path("api/v1/playground/token", api.PlaygroundTokenView.as_view(), name="playground-token"),
    # Everything that isn't the API, the admin or a static file is a client-side route of the dashboard.
    re_path(r"^(?!api/|admin/|static/)(?P<path>.*)$", views.spa, name="dashboard"),
]
