"""App setting names: the one source of truth for code, local.settings.sample.json and infra/.

Every setting the code reads is declared here with its default (None = required in Azure).
``tests/infra`` fails if the Bicep templates or the local settings sample
lack one of them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    description: str

    def read(self, environ: dict[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        value = env.get(self.name)
        return value if value not in (None, "") else self.default


STORAGE = Setting(
    "AzureWebJobsStorage",
    None,
    "Host storage: queues renewal-jobs/deployments, table renewals, claim and dead-letter containers. "
    "A connection string locally; in Azure the identity-based form AzureWebJobsStorage__*ServiceUri.",
)
STORAGE_CLIENT_ID = Setting(
    "AzureWebJobsStorage__clientId", "", "Client id of the user-assigned identity used for storage (Azure only)."
)
STORAGE_QUEUE_URI = Setting("AzureWebJobsStorage__queueServiceUri", "", "Queue endpoint (identity-based storage).")
STORAGE_TABLE_URI = Setting("AzureWebJobsStorage__tableServiceUri", "", "Table endpoint (identity-based storage).")
STORAGE_BLOB_URI = Setting("AzureWebJobsStorage__blobServiceUri", "", "Blob endpoint (identity-based storage).")
CONFIG = Setting("RENEWAL_CONFIG", "", "The renewal configuration document as JSON (vaults, issuers, routes...).")
CONFIG_PATH = Setting("RENEWAL_CONFIG_PATH", "", "Path of the configuration document, when not inline.")
SWEEP_SCHEDULE = Setting("RENEWAL_SWEEP_SCHEDULE", "0 30 2 * * *", "NCRONTAB of the nightly sweep (UTC).")
AZURE_CLIENT_ID = Setting(
    "AZURE_CLIENT_ID", "", "Client id of the user-assigned managed identity used for Key Vault and Event Grid."
)
KEYVAULT_CA_BUNDLE = Setting(
    "RENEWAL_KEYVAULT_CA_BUNDLE", "", "Dev/test only: CA bundle that signs the Key Vault emulator's TLS certificate."
)
KEYVAULT_CREDENTIAL = Setting(
    "RENEWAL_KEYVAULT_CREDENTIAL",
    "managed-identity",
    "managed-identity (Azure) or emulator (a static dev token; refused unless RENEWAL_KEYVAULT_CA_BUNDLE is set).",
)
STORAGE_API_VERSION = Setting(
    "RENEWAL_STORAGE_API_VERSION", "", "Dev/test only: storage api-version to pin (Azurite 3.35 accepts 2025-11-05)."
)
LOG_LEVEL = Setting("RENEWAL_LOG_LEVEL", "INFO", "Log level of the renewal loggers.")
APPLICATIONINSIGHTS_CONNECTION_STRING = Setting(
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "", "Application Insights connection string (metrics go there)."
)
METRICS_EXPORTER = Setting(
    "RENEWAL_METRICS_EXPORTER",
    "auto",
    "auto (Azure Monitor when APPLICATIONINSIGHTS_CONNECTION_STRING is set, else none) | azure-monitor | console "
    "| otlp | none.",
)
DASHBOARD_SECRET = Setting(
    "RENEWAL_DASHBOARD_SECRET",
    "",
    "Key of the dashboard's CSRF tokens; empty = a random per-process key (set it when several instances serve).",
)

EASY_AUTH = Setting(
    "WEBSITE_AUTH_ENABLED",
    "",
    "Set to True by App Service when its authentication (Easy Auth) is on; only then is the principal "
    "header trusted. The platform sets it: never an app setting of ours.",
)

BACKUP_STORAGE = Setting(
    "RENEWAL_BACKUP_STORAGE",
    "",
    "Blob endpoint of the backup storage account in another region (the app's identity writes there), or "
    "locally a connection string; empty = no backups.",
)
BACKUP_SCHEDULE = Setting(
    "RENEWAL_BACKUP_SCHEDULE",
    "0 0 4 * * 0",
    "NCRONTAB of the weekly backup of certificates the service did not renew (UTC).",
)

ALL: tuple[Setting, ...] = (
    STORAGE,
    STORAGE_CLIENT_ID,
    STORAGE_QUEUE_URI,
    STORAGE_TABLE_URI,
    STORAGE_BLOB_URI,
    CONFIG,
    CONFIG_PATH,
    SWEEP_SCHEDULE,
    AZURE_CLIENT_ID,
    KEYVAULT_CA_BUNDLE,
    KEYVAULT_CREDENTIAL,
    STORAGE_API_VERSION,
    LOG_LEVEL,
    APPLICATIONINSIGHTS_CONNECTION_STRING,
    METRICS_EXPORTER,
    DASHBOARD_SECRET,
    EASY_AUTH,
    BACKUP_STORAGE,
    BACKUP_SCHEDULE,
)

# Settings the platform sets by itself; infra/ must not set them.
PLATFORM_SET: frozenset[str] = frozenset({EASY_AUTH.name})
# Settings that exist only for local runs against the emulator and Azurite; infra/ must not set them.
DEV_ONLY: frozenset[str] = frozenset({KEYVAULT_CA_BUNDLE.name, STORAGE_API_VERSION.name})
# Settings the identity-based form replaces in Azure (the host reads them, infra sets them).
AZURE_ONLY: frozenset[str] = frozenset(
    {
        STORAGE_CLIENT_ID.name,
        STORAGE_QUEUE_URI.name,
        STORAGE_TABLE_URI.name,
        STORAGE_BLOB_URI.name,
        AZURE_CLIENT_ID.name,
    }
)

# Storage resource names, shared by function_app bindings, adapters and infra.
JOBS_QUEUE = "renewal-jobs"
DEPLOYMENTS_QUEUE = "deployments"
LEDGER_TABLE = "renewals"
CREATE_BUDGET_TABLE = "createbudget"
VERSION_FACTS_TABLE = "versionfacts"
RENEWAL_WINDOWS_TABLE = "renewalwindows"
ROLLOUTS_TABLE = "rollouts"
CLAIMS_CONTAINER = "renewal-claims"
DEADLETTER_CONTAINER = "eventgrid-deadletter"
BACKUP_CONTAINER = "certificate-backups"
"""In the backup account (RENEWAL_BACKUP_STORAGE), not the app's own."""
MAX_DEQUEUE_COUNT = 5
# Key Vault's service limit on certificate creates (software keys; HSM vaults allow 10).
KEYVAULT_CREATE_LIMIT = 20
KEYVAULT_CREATE_WINDOW_SECONDS = 10.0


def poison_queue(queue: str) -> str:
    return f"{queue}-poison"
