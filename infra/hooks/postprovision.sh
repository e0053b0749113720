#!/bin/sh
# After `azd provision`: create or update the event subscriptions if the function is already
# deployed (for example after adding a vault); on a first `azd up` the postdeploy hook does it.
RENEWAL_HOOK_MODE=if-function-exists
export RENEWAL_HOOK_MODE
exec sh "$(dirname "$0")/postdeploy.sh"
