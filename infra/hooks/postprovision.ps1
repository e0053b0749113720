# After `azd provision`: create or update the event subscriptions if the function is already
# deployed (for example after adding a vault); on a first `azd up` the postdeploy hook does it.
$env:RENEWAL_HOOK_MODE = 'if-function-exists'
& (Join-Path $PSScriptRoot 'postdeploy.ps1')
exit $LASTEXITCODE
