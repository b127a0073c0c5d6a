"""OpenAPI description of the authentication (drf-spectacular extension, loaded by the app)."""

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class SessionJWTScheme(SimpleJWTScheme):
    target_class = "accounts.authentication.SessionJWTAuthentication"
    name = "jwtAuth"
