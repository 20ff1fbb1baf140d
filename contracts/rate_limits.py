"""Default rate limits of an account that sets none (accounts_account.rpm_limit / tpm_limit null): the gateway
enforces them (gateway.settings, overridable with HEARTH_GATEWAY_DEFAULT_RPM_LIMIT / _TPM_LIMIT) and the control
plane shows them (GET /api/v1/account), reading the same variables."""

DEFAULT_RPM_LIMIT = 600
DEFAULT_TPM_LIMIT = 200_000
