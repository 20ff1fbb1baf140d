"""Settings from the environment. Development defaults point at the embedded services under .hearth/;
production sets DATABASE_URL, REDIS_URL and HEARTH_SECRET_KEY (no default outside development)."""

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from celery.schedules import crontab

REPO_ROOT = Path(__file__).resolve().parents[2]
HEARTH_HOME = Path(os.environ.get("HEARTH_HOME", REPO_ROOT / ".hearth"))
HEARTH_ENV = os.environ.get("HEARTH_ENV", "development")
DEBUG = os.environ.get("HEARTH_DEBUG", "1" if HEARTH_ENV == "development" else "0") == "1"

SECRET_KEY = os.environ.get("HEARTH_SECRET_KEY", "")
if not SECRET_KEY:
    if HEARTH_ENV != "development":
        raise RuntimeError("HEARTH_SECRET_KEY must be set outside development")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"

ALLOWED_HOSTS = [h for h in os.environ.get("HEARTH_ALLOWED_HOSTS", "localhost,127.0.0.1,testserver").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("HEARTH_CSRF_TRUSTED_ORIGINS", "").split(",") if o]
# Outside development the dashboard is served over HTTPS (behind a proxy that sets X-Forwarded-Proto).
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HEARTH_ENV != "development"
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HEARTH_ENV != "development" else None
SESSION_COOKIE_SAMESITE = CSRF_COOKIE_SAMESITE = "Lax"


def database_from_url(url: str) -> dict:
    """postgresql://user:pass@host:port/name, or postgresql://user@/name?host=/socket/dir for a unix socket."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql"):
        raise RuntimeError("DATABASE_URL must be a postgresql:// URL (Hearth runs on Postgres only)")
    query = parse_qs(parsed.query)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")) or "hearth",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": query.get("host", [parsed.hostname or ""])[0],
        "PORT": str(parsed.port or ""),
        "CONN_MAX_AGE": 60,
    }


DEFAULT_DATABASE_URL = f"postgresql://postgres@/hearth?host={HEARTH_HOME / 'postgres'}"
DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))}
# Several test runs may share one Postgres server (the embedded one is shared between processes); the test plugin
# gives each run its own test database name so they don't drop each other's.
if os.environ.get("HEARTH_TEST_DATABASE_NAME"):
    DATABASES["default"]["TEST"] = {"NAME": os.environ["HEARTH_TEST_DATABASE_NAME"]}
REDIS_URL = os.environ.get("REDIS_URL", f"unix://{HEARTH_HOME / 'redis' / 'redis.sock'}")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "accounts",
    "keys",
    "catalog",
    "billing",
    "adapters",
    "routes",
    "webapp",
]
AUTH_USER_MODEL = "accounts.User"

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "hearth_platform.urls"
WSGI_APPLICATION = "hearth_platform.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATICFILES_DIRS = [("app", d) for d in [REPO_ROOT / "frontend" / "dist" / "app"] if d.is_dir()]  # the dashboard
STATIC_ROOT = Path(os.environ.get("HEARTH_STATIC_ROOT", HEARTH_HOME / "static"))
if DEBUG:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start about a missing root
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    # Bearer first: an unauthenticated request then gets 401 + WWW-Authenticate rather than 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "keys.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tenancy.api.exception_handler",
    # Client IP for throttling: REMOTE_ADDR unless this many trusted proxies append to X-Forwarded-For (a client could
    # otherwise pick its own address).
    "NUM_PROXIES": int(os.environ.get("HEARTH_NUM_PROXIES", "0")),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Hearth control plane API",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Several models have a `status` with different choices; name each set instead of letting it hash a suffix.
    "ENUM_NAME_OVERRIDES": {"AccountStatusEnum": "accounts.models.Account.Status"},
}
WHITENOISE_USE_FINDERS = DEBUG  # serve admin/static assets without collectstatic in development

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER", "0") == "1"


def cron_schedule(spec: str) -> crontab:
    """A five-field cron line (minute hour day-of-month month day-of-week, UTC) as Celery's crontab."""
    fields = spec.split()
    if len(fields) != 5:
        raise RuntimeError(f"expected a five-field cron line, got {spec!r}")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    return crontab(minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year,
                   day_of_week=day_of_week)


CELERY_BEAT_SCHEDULE = {
    # The gateways' key touches (Redis hash contracts.KEYS_LAST_USED_HASH) into keys_apikey.last_used_at. `expires`: a run
    # that waited longer than one period is dropped, the next one carries the same data.
    "keys-flush-last-used": {"task": "keys.tasks.flush_key_last_used", "schedule": 10.0, "options": {"expires": 10}},
    # Uploads whose validation task never reached the broker stay `pending`, and those whose task died stay
    # `validating`; sweep them back into the queue.
    "adapters-requeue-pending": {"task": "adapters.requeue_pending", "schedule": 60.0, "options": {"expires": 60}},
    # Invoice the month that just ended. Days 1-3: a run missed (beat or workers down) or a declined card is tried
    # again; the job is idempotent (paid invoices and pushed items are found, not made twice).
    "billing-close-period": {
        "task": "billing.close_period",
        "schedule": cron_schedule(os.environ.get("HEARTH_BILLING_CLOSE_PERIOD_CRON", "0 1 1-3 * *")),
        "options": {"expires": 3600},
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HEARTH_LOG_LEVEL", "INFO")},
}
