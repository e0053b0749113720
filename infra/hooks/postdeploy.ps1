# Second deployment pass: creates the Event Grid subscriptions (infra/subscriptions.bicep) from each
# certificate vault's system topic to the function `on_certificate_event`, once that function
# exists. Windows twin of postdeploy.sh; same inputs, same modes (RENEWAL_HOOK_MODE).
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$template = Join-Path $PSScriptRoot '..' 'subscriptions.bicep'
$mode = if ($env:RENEWAL_HOOK_MODE) { $env:RENEWAL_HOOK_MODE } else { 'require' }
$functionName = 'on_certificate_event'
$topicsJson = if ($env:RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS) { $env:RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS } else { '[]' }

foreach ($name in 'AZURE_LOCATION', 'AZURE_SUBSCRIPTION_ID', 'RENEWAL_FUNCTION_APP_ID', 'RENEWAL_DEADLETTER_STORAGE_ID') {
    if (-not [Environment]::GetEnvironmentVariable($name)) {
        Write-Error "event subscriptions: $name is not set; run 'azd provision' first"
    }
}

$topics = @($topicsJson | ConvertFrom-Json)
if ($topics.Count -eq 0) {
    Write-Host 'event subscriptions: no certificate vaults configured (RENEWAL_CERTIFICATE_VAULT_IDS); nothing to do'
    exit 0
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Error "event subscriptions: the Azure CLI (az) is required; install it and run 'az login'"
}

$functionId = "$($env:RENEWAL_FUNCTION_APP_ID)/functions/$functionName"

# A signed-out CLI, another tenant or another subscription must fail here, loudly: otherwise every
# lookup below would look like "not deployed yet" and a new vault would silently get no subscription.
$signedIn = az account show --query id --output tsv 2>&1
if ($LASTEXITCODE -ne 0) {
    Write-Error "event subscriptions: the Azure CLI is not signed in ($signedIn); run 'az login'"
    exit 1
}
if ("$signedIn".Trim() -ne $env:AZURE_SUBSCRIPTION_ID) {
    Write-Error "event subscriptions: the Azure CLI uses subscription $signedIn, not $($env:AZURE_SUBSCRIPTION_ID); run 'az account set --subscription $($env:AZURE_SUBSCRIPTION_ID)'"
    exit 1
}

# $true: the function exists; $false: it does not (ResourceNotFound); any other error stops the hook.
function Test-FunctionExists {
    $answer = az resource show --ids $functionId --api-version 2024-04-01 --query id --output tsv 2>&1
    if ($LASTEXITCODE -eq 0) { return $true }
    if ("$answer" -match 'ResourceNotFound|NotFound') { return $false }
    Write-Error "event subscriptions: looking up $functionId failed: $answer"
    exit 1
}

if ($mode -eq 'if-function-exists') {
    if (-not (Test-FunctionExists)) {
        Write-Host "event subscriptions: $functionName is not deployed yet; the postdeploy hook creates them"
        exit 0
    }
} else {
    $attempt = 0
    while (-not (Test-FunctionExists)) {
        $attempt++
        if ($attempt -ge 60) { Write-Error "event subscriptions: $functionId did not appear within 10 minutes" }
        Write-Host "event subscriptions: waiting for $functionName to be indexed ($attempt/60)"
        Start-Sleep -Seconds 10
    }
}

$params = [ordered]@{
    '$schema'      = 'https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#'
    contentVersion = '1.0.0.0'
    parameters     = [ordered]@{
        systemTopicIds             = @{ value = $topics }
        environmentName            = @{ value = $(if ($env:AZURE_ENV_NAME) { $env:AZURE_ENV_NAME } else { 'default' }) }
        functionAppId              = @{ value = $env:RENEWAL_FUNCTION_APP_ID }
        deadLetterStorageAccountId = @{ value = $env:RENEWAL_DEADLETTER_STORAGE_ID }
    }
}
$paramsFile = New-TemporaryFile
try {
    $params | ConvertTo-Json -Depth 10 | Set-Content -Path $paramsFile -Encoding utf8
    $envName = if ($env:AZURE_ENV_NAME) { $env:AZURE_ENV_NAME } else { 'default' }
    Write-Host 'event subscriptions: deploying infra/subscriptions.bicep'
    az deployment sub create `
        --subscription $env:AZURE_SUBSCRIPTION_ID `
        --name "renewal-event-subscriptions-$envName" `
        --location $env:AZURE_LOCATION `
        --template-file $template `
        --parameters "@$paramsFile" `
        --output none
    if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
    Write-Host 'event subscriptions: done'
} finally {
    Remove-Item -Path $paramsFile -ErrorAction SilentlyContinue
}
