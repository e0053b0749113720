#!/bin/sh
# Second deployment pass: creates the Event Grid subscriptions (infra/subscriptions.bicep) from each
# certificate vault's system topic to the function `on_certificate_event`, once that function
# exists. Run by azd after `azd deploy` (and so by `azd up`); postprovision.sh runs it too, in a
# mode that skips when the code is not deployed yet. Idempotent: re-running changes nothing.
#
# Inputs (azd exports the environment's values): AZURE_ENV_NAME, AZURE_LOCATION,
# AZURE_SUBSCRIPTION_ID, RENEWAL_FUNCTION_APP_ID, RENEWAL_DEADLETTER_STORAGE_ID,
# RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS (JSON array). Needs the Azure CLI, signed in to the same tenant.
# RENEWAL_HOOK_MODE: "require" (default: wait for the function, fail if it never appears) or
# "if-function-exists" (skip quietly when the function is not deployed).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
template="$here/../subscriptions.bicep"
mode="${RENEWAL_HOOK_MODE:-require}"
function_name="on_certificate_event"
topics="${RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS:-[]}"

for name in AZURE_LOCATION AZURE_SUBSCRIPTION_ID RENEWAL_FUNCTION_APP_ID RENEWAL_DEADLETTER_STORAGE_ID; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "event subscriptions: $name is not set; run 'azd provision' first" >&2
    exit 1
  fi
done

if [ "$(printf '%s' "$topics" | tr -d '[:space:]')" = "[]" ]; then
  echo "event subscriptions: no certificate vaults configured (RENEWAL_CERTIFICATE_VAULT_IDS); nothing to do"
  exit 0
fi

if ! command -v az >/dev/null 2>&1; then
  echo "event subscriptions: the Azure CLI (az) is required; install it and run 'az login'" >&2
  exit 1
fi

# A signed-out CLI, another tenant or another subscription must fail here, loudly: otherwise every
# lookup below would look like "not deployed yet" and a new vault would silently get no subscription.
if ! signed_in=$(az account show --query id --output tsv 2>&1); then
  echo "event subscriptions: the Azure CLI is not signed in ($signed_in); run 'az login'" >&2
  exit 1
fi
if [ "$signed_in" != "$AZURE_SUBSCRIPTION_ID" ]; then
  echo "event subscriptions: the Azure CLI uses subscription $signed_in, not $AZURE_SUBSCRIPTION_ID;" \
    "run 'az account set --subscription $AZURE_SUBSCRIPTION_ID'" >&2
  exit 1
fi

function_id="$RENEWAL_FUNCTION_APP_ID/functions/$function_name"

# 0: the function exists; 1: it does not (ResourceNotFound); any other error stops the hook.
function_exists() {
  if answer=$(az resource show --ids "$function_id" --api-version 2024-04-01 --query id --output tsv 2>&1); then
    return 0
  fi
  case "$answer" in
    *ResourceNotFound* | *NotFound*) return 1 ;;
  esac
  echo "event subscriptions: looking up $function_id failed: $answer" >&2
  exit 1
}

if [ "$mode" = "if-function-exists" ]; then
  if ! function_exists; then
    echo "event subscriptions: $function_name is not deployed yet; the postdeploy hook creates them"
    exit 0
  fi
else
  # The host indexes the functions a little after the package lands; wait up to 10 minutes.
  attempt=0
  until function_exists; do
    attempt=$((attempt + 1))
    if [ "$attempt" -ge 60 ]; then
      echo "event subscriptions: $function_id did not appear within 10 minutes" >&2
      exit 1
    fi
    echo "event subscriptions: waiting for $function_name to be indexed ($attempt/60)"
    sleep 10
  done
fi

params=$(mktemp)
trap 'rm -f "$params"' EXIT
cat >"$params" <<JSON
{
  "\$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
  "contentVersion": "1.0.0.0",
  "parameters": {
    "systemTopicIds": { "value": $topics },
    "environmentName": { "value": "${AZURE_ENV_NAME:-default}" },
    "functionAppId": { "value": "$RENEWAL_FUNCTION_APP_ID" },
    "deadLetterStorageAccountId": { "value": "$RENEWAL_DEADLETTER_STORAGE_ID" }
  }
}
JSON

echo "event subscriptions: deploying infra/subscriptions.bicep"
az deployment sub create \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --name "renewal-event-subscriptions-${AZURE_ENV_NAME:-default}" \
  --location "$AZURE_LOCATION" \
  --template-file "$template" \
  --parameters "@$params" \
  --output none
echo "event subscriptions: done"
