"""Reads the Bicep templates in infra/ (parsed with pycep-parser) and checks the deployment's promises.

Every checker takes a ``Templates`` (path -> source text) and returns a list of problems, so tests can run
the same checker on the real files and on a deliberately broken copy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

from renewal import settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = "main.bicep"
SUBSCRIPTIONS = "subscriptions.bicep"

CERTIFICATES_OFFICER = "a4417e6f-fecd-4de8-b567-7b0420556985"
SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
# The rollout deployers' roles, each on its own target resource (infra/app/rollout-*.bicep).
NETWORK_CONTRIBUTOR = "4d97b98b-1d4f-4787-a291-c67834d212e7"
MANAGED_IDENTITY_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
API_MANAGEMENT_OPERATOR = "e022efe7-f5ba-4159-bbe4-b44f577e9b61"
CDN_PROFILE_CONTRIBUTOR = "ec156ff8-a8d1-4d15-830c-5b80698ca432"

VAULT = "Microsoft.KeyVault/vaults"
STORAGE_ACCOUNT = "Microsoft.Storage/storageAccounts"
CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
APP_INSIGHTS = "Microsoft.Insights/components"
APPLICATION_GATEWAY = "Microsoft.Network/applicationGateways"
USER_ASSIGNED_IDENTITY = "Microsoft.ManagedIdentity/userAssignedIdentities"
WEB_CERTIFICATE = "Microsoft.Web/certificates"
API_MANAGEMENT = "Microsoft.ApiManagement/service"
CDN_PROFILE = "Microsoft.Cdn/profiles"

# The only roles the deployment may grant, and the resource types each may be scoped to.
ALLOWED_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    CERTIFICATES_OFFICER: ("Key Vault Certificates Officer", frozenset({VAULT})),
    SECRETS_USER: ("Key Vault Secrets User", frozenset({VAULT})),
    BLOB_DATA_OWNER: ("Storage Blob Data Owner", frozenset({STORAGE_ACCOUNT})),
    QUEUE_DATA_CONTRIBUTOR: ("Storage Queue Data Contributor", frozenset({STORAGE_ACCOUNT})),
    TABLE_DATA_CONTRIBUTOR: ("Storage Table Data Contributor", frozenset({STORAGE_ACCOUNT})),
    METRICS_PUBLISHER: ("Monitoring Metrics Publisher", frozenset({APP_INSIGHTS})),
    BLOB_DATA_CONTRIBUTOR: ("Storage Blob Data Contributor", frozenset({CONTAINER})),
    NETWORK_CONTRIBUTOR: ("Network Contributor", frozenset({APPLICATION_GATEWAY})),
    MANAGED_IDENTITY_OPERATOR: ("Managed Identity Operator", frozenset({USER_ASSIGNED_IDENTITY})),
    WEBSITE_CONTRIBUTOR: ("Website Contributor", frozenset({WEB_CERTIFICATE})),
    API_MANAGEMENT_OPERATOR: ("API Management Service Operator Role", frozenset({API_MANAGEMENT})),
    CDN_PROFILE_CONTRIBUTOR: ("CDN Profile Contributor", frozenset({CDN_PROFILE})),
}


@dataclass(frozen=True)
class RolloutTarget:
    """A main.bicep parameter listing one kind of deployer target, and the one role the app identity gets on each."""

    module: str
    """The module (relative to infra/) that main.bicep deploys once per id, in that id's resource group."""
    name_param: str
    """The module parameter that receives the resource's name (the id's last segment)."""
    resource_type: str
    role: str


ROLLOUT_TARGETS: dict[str, RolloutTarget] = {
    "applicationGatewayIds": RolloutTarget(
        "app/rollout-application-gateway.bicep", "gatewayName", APPLICATION_GATEWAY, NETWORK_CONTRIBUTOR
    ),
    "applicationGatewayIdentityIds": RolloutTarget(
        "app/rollout-gateway-identity.bicep", "identityName", USER_ASSIGNED_IDENTITY, MANAGED_IDENTITY_OPERATOR
    ),
    "appServiceCertificateIds": RolloutTarget(
        "app/rollout-app-service-certificate.bicep", "certificateName", WEB_CERTIFICATE, WEBSITE_CONTRIBUTOR
    ),
    "apiManagementIds": RolloutTarget(
        "app/rollout-api-management.bicep", "serviceName", API_MANAGEMENT, API_MANAGEMENT_OPERATOR
    ),
    "frontDoorProfileIds": RolloutTarget(
        "app/rollout-front-door.bicep", "profileName", CDN_PROFILE, CDN_PROFILE_CONTRIBUTOR
    ),
}

# Roles that can read secrets (and so a certificate's private key), directly or by granting themselves.
SECRET_READING_ROLES: dict[str, str] = {
    SECRETS_USER: "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "db79e9a7-68ee-4b58-9aeb-b90e7c24fcba": "Key Vault Certificate User",
    "00482a5a-887f-4fb3-b363-3b7fe8e74483": "Key Vault Administrator",
    "8b54135c-b56d-4d72-a534-26097cfdc8d8": "Key Vault Data Access Administrator",
    "b24988ac-6180-42a0-ab88-20f7382dd24c": "Contributor",
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635": "Owner",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9": "User Access Administrator",
}

CERTIFICATE_EVENT_TYPES = frozenset(
    {"Microsoft.KeyVault.CertificateNearExpiry", "Microsoft.KeyVault.CertificateExpired"}
)
EVENT_FUNCTION = "on_certificate_event"

GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)

Templates = dict[str, str]
"""Path relative to infra/ (``main.bicep``, ``app/platform.bicep``) -> Bicep source."""


def load_templates() -> Templates:
    return {p.relative_to(INFRA).as_posix(): p.read_text() for p in sorted(INFRA.rglob("*.bicep"))}


@cache
def parse(text: str) -> dict[str, Any]:
    """Parses Bicep text; raises on a syntax error."""
    return BicepParser().parse(text=text)


@dataclass(frozen=True)
class Resource:
    symbol: str
    type: str
    existing: bool
    body: dict[str, Any]
    """The resource body (loop wrappers removed)."""
    loop_over: Any = None


def resources(doc: dict[str, Any]) -> Iterator[Resource]:
    for symbol, res in (doc.get("resources") or {}).items():
        body = res["config"]
        loop = None
        if isinstance(body, dict) and "loop_type" in body:
            loop = body["loop_type"]["detail"].get("array_name")
            body = body["config"]
        yield Resource(symbol, res["type"], bool(res.get("existing")), body, loop)


def resolve(doc: dict[str, Any], value: Any, depth: int = 0) -> Any:
    """Follows a bare variable name to its value (pycep keeps identifiers as plain strings)."""
    variables = doc.get("variables") or {}
    while isinstance(value, str) and value in variables and depth < 20:
        value = variables[value]["value"]
        depth += 1
    return value


def interpolate(doc: dict[str, Any], text: str) -> str:
    """Substitutes ``${name}`` in a Bicep string where ``name`` is a variable with a literal string value."""

    def one(match: re.Match[str]) -> str:
        value = resolve(doc, match.group(1))
        return value if isinstance(value, str) and value != match.group(1) else match.group(0)

    return re.sub(r"\$\{(\w+)\}", one, text)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


@dataclass(frozen=True)
class RoleGrant:
    file: str
    symbol: str
    role_ids: frozenset[str]
    scope_symbol: str | None
    scope_type: str | None


def role_grants(templates: Templates) -> list[RoleGrant]:
    grants = []
    for path, text in templates.items():
        doc = parse(text)
        by_symbol = {r.symbol: r for r in resources(doc)}
        for res in by_symbol.values():
            if res.type.lower() != "microsoft.authorization/roleassignments":
                continue
            props = resolve(doc, res.body.get("properties")) or {}
            role_expr = resolve(doc, props.get("roleDefinitionId"))
            ids = frozenset(g.lower() for s in strings_in(role_expr) for g in GUID.findall(resolve(doc, s) or ""))
            scope = res.body.get("scope")
            scope_symbol = scope if isinstance(scope, str) else None
            scope_res = by_symbol.get(scope_symbol) if scope_symbol else None
            grants.append(RoleGrant(path, res.symbol, ids, scope_symbol, scope_res.type if scope_res else None))
    return grants


def modules(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """symbol -> {"path", "loop_over", "item" (the loop's item variable), "body"} for each module of a template."""
    found = {}
    for symbol, mod in (doc.get("modules") or {}).items():
        body = mod["config"]
        loop = item = None
        if "loop_type" in body:
            loop = body["loop_type"]["detail"].get("array_name")
            item = body["loop_type"]["detail"].get("item_name")
            body = body["config"]
        found[symbol] = {"path": mod["detail"]["path"], "loop_over": loop, "item": item, "body": body}
    return found


def vault_module_files(templates: Templates) -> tuple[set[str], set[str]]:
    """(certificate vault module files, configuration vault module files) as main.bicep uses them."""
    certificate, config = set(), set()
    for mod in modules(parse(templates[MAIN])).values():
        if mod["loop_over"] == "certificateVaultIds":
            certificate.add(mod["path"])
        elif any("configVaultId" in s for s in strings_in(mod["body"].get("scope"))):
            config.add(mod["path"])
    return certificate, config


# --- checkers -------------------------------------------------------------------------------------------


def check_syntax(templates: Templates) -> list[str]:
    problems = []
    for path, text in templates.items():
        try:
            parse(text)
        except Exception as exc:  # noqa: BLE001 - any parser failure is the finding
            problems.append(f"{path}: does not parse: {type(exc).__name__}: {str(exc)[:200]}")
    return problems


def check_roles(templates: Templates) -> list[str]:
    """Only allowed roles, each on the kind of resource it is meant for; role ids must be literal."""
    problems = []
    grants = role_grants(templates)
    for g in grants:
        where = f"{g.file}:{g.symbol}"
        if len(g.role_ids) != 1:
            problems.append(f"{where}: role definition is not one literal GUID ({sorted(g.role_ids)})")
            continue
        (role,) = g.role_ids
        if role not in ALLOWED_ROLES:
            name = SECRET_READING_ROLES.get(role, role)
            problems.append(f"{where}: grants {name}, which is not in the allowed set")
            continue
        name, scope_types = ALLOWED_ROLES[role]
        if g.scope_type not in scope_types:
            problems.append(
                f"{where}: {name} scoped to {g.scope_type or g.scope_symbol!r}, expected {sorted(scope_types)}"
            )
    if not grants:
        problems.append("no role assignments found at all")
    return problems


def check_vault_roles(templates: Templates) -> list[str]:
    """Certificate vaults: Certificates Officer only; secrets roles only in the configuration vault module."""
    problems = []
    certificate_files, config_files = vault_module_files(templates)
    if not certificate_files:
        problems.append("main.bicep has no module looped over certificateVaultIds")
    if not config_files:
        problems.append("main.bicep has no module scoped to configVaultId")
    if certificate_files & config_files:
        problems.append(
            f"the same module serves certificate and configuration vaults: {certificate_files & config_files}"
        )
    grants = role_grants(templates)
    if certificate_files and not any(CERTIFICATES_OFFICER in g.role_ids for g in grants if g.file in certificate_files):
        problems.append(f"{sorted(certificate_files)}: nothing grants Certificates Officer on the certificate vaults")
    for path in certificate_files:
        mine = [g for g in grants if g.file == path]
        for g in mine:
            for role in g.role_ids:
                if role in SECRET_READING_ROLES:
                    problems.append(
                        f"{path}:{g.symbol}: {SECRET_READING_ROLES[role]} on a certificate vault (promise 4)"
                    )
                elif role != CERTIFICATES_OFFICER:
                    problems.append(
                        f"{path}:{g.symbol}: certificate vault module grants {role}, not Certificates Officer"
                    )
    for g in grants:
        if g.file in config_files:
            if g.role_ids != {SECRETS_USER}:
                problems.append(
                    f"{g.file}:{g.symbol}: configuration vault grants {sorted(g.role_ids)}, not Secrets User"
                )
        elif g.role_ids & set(SECRET_READING_ROLES):
            problems.append(f"{g.file}:{g.symbol}: a secrets-reading role outside the configuration vault module")
        elif g.scope_type == VAULT and g.file not in certificate_files:
            problems.append(f"{g.file}:{g.symbol}: a vault role outside the vault modules")
    return problems


def _dotted(expression: Any) -> str | None:
    """``a.b.c`` for a chain of property accessors (``platform.outputs.identityPrincipalId``), else None."""
    if isinstance(expression, str):
        return expression
    operator = expression.get("operator") if isinstance(expression, dict) else None
    if isinstance(operator, dict) and operator.get("type") == "property_accessor":
        first, second = (_dotted(operator["operands"].get(k)) for k in ("operand_1", "operand_2"))
        if first and second:
            return f"{first}.{second}"
    return None


def _id_segment(expression: Any, item: str | None) -> int | None:
    """n when the expression is ``split(<item>, '/')[n]``: a segment of the resource id the loop is at."""
    operator = expression.get("operator") if isinstance(expression, dict) else None
    if not (isinstance(operator, dict) and operator.get("type") == "index_accessor"):
        return None
    operands = operator.get("operands") or {}
    split = (operands.get("operand_1") or {}).get("function") if isinstance(operands.get("operand_1"), dict) else None
    if not (isinstance(split, dict) and split.get("type") == "split"):
        return None
    arguments = split.get("parameters") or {}
    if item is None or arguments.get("input_string") != item or arguments.get("delimiter") != "/":
        return None
    index = operands.get("operand_2")
    return index if isinstance(index, int) else None


def check_rollout_targets(templates: Templates) -> list[str]:
    """Each deployer target kind: a main.bicep array parameter, a module deployed per id in that id's own resource
    group, and in that module exactly one grant, of the kind's role, to the app identity, on the existing target
    resource itself (not its resource group or subscription), named guid(<resource>.id, principalId, <role>)."""
    problems = []
    main = parse(templates[MAIN])
    declared = main.get("parameters") or {}
    found = modules(main)
    rollout_files = {target.module for target in ROLLOUT_TARGETS.values()}
    for symbol, mod in found.items():
        if mod["path"] in rollout_files and not any(
            mod["loop_over"] == param and mod["path"] == target.module for param, target in ROLLOUT_TARGETS.items()
        ):
            problems.append(f"main.bicep:{symbol}: {mod['path']} deployed other than once per id of its parameter")
    for param, target in ROLLOUT_TARGETS.items():
        where = f"main.bicep:{param}"
        spec = declared.get(param)
        if spec is None:
            problems.append(f"{where}: parameter missing")
        else:
            if spec.get("type") != "array" or spec.get("default") != []:
                problems.append(f"{where}: must be an array defaulting to [] (no targets: no grants)")
            if not any(d.get("type") == "description" and d.get("argument") for d in spec.get("decorators") or []):
                problems.append(f"{where}: no @description")
        looping = {symbol: mod for symbol, mod in found.items() if mod["loop_over"] == param}
        if len(looping) != 1:
            problems.append(f"{where}: {len(looping)} modules loop over it, expected one ({target.module})")
        for symbol, mod in looping.items():
            problems += _check_rollout_module_use(f"main.bicep:{symbol}", mod, target)
        if target.module not in templates:
            problems.append(f"{target.module}: missing")
        else:
            problems += _check_rollout_module(target.module, parse(templates[target.module]), target)
    return problems


def _check_rollout_module_use(where: str, mod: dict[str, Any], target: RolloutTarget) -> list[str]:
    problems = []
    item, body = mod["item"], mod["body"]
    if mod["path"] != target.module:
        problems.append(f"{where}: deploys {mod['path']}, expected {target.module}")
    scope = (body.get("scope") or {}).get("function") if isinstance(body.get("scope"), dict) else None
    arguments = (scope or {}).get("parameters") or {}
    if not (
        (scope or {}).get("type") == "resource_group"
        and _id_segment(arguments.get("subscription_id"), item) == 2
        and _id_segment(arguments.get("resource_group_name"), item) == 4
    ):
        problems.append(f"{where}: scope is not resourceGroup(split({item}, '/')[2], split({item}, '/')[4])")
    params = body.get("params") or {}
    if _id_segment(params.get(target.name_param), item) != 8:
        problems.append(f"{where}: {target.name_param} is not split({item}, '/')[8]")
    if _dotted(params.get("principalId")) != "platform.outputs.identityPrincipalId":
        problems.append(f"{where}: principalId is not the app identity (platform.outputs.identityPrincipalId)")
    if "${resourceToken}" not in str(body.get("name")):
        problems.append(f"{where}: deployment name does not carry the environment (resourceToken)")
    return problems


def _check_rollout_module(path: str, doc: dict[str, Any], target: RolloutTarget) -> list[str]:
    problems = []
    params = doc.get("parameters") or {}
    for needed in (target.name_param, "principalId"):
        if needed not in params:
            problems.append(f"{path}: no parameter {needed}")
    by_symbol = {r.symbol: r for r in resources(doc)}
    assignments = [r for r in by_symbol.values() if r.type.lower() == "microsoft.authorization/roleassignments"]
    for res in by_symbol.values():
        if not res.existing and res not in assignments:
            problems.append(f"{path}:{res.symbol}: creates a {res.type}; a rollout module only grants")
    if len(assignments) != 1:
        return [*problems, f"{path}: {len(assignments)} role assignments, expected one"]
    (grant,) = assignments
    where = f"{path}:{grant.symbol}"
    if grant.loop_over is not None:
        problems.append(f"{where}: looped; one grant per module deployment")
    scope = grant.body.get("scope")
    scoped = by_symbol.get(scope) if isinstance(scope, str) else None
    if scoped is None:
        what = repr(scope) if isinstance(scope, str) else "an expression" if scope else "missing"
        return [*problems, f"{where}: scope is {what}, not a resource of this module (so a resource group or wider)"]
    if scoped.type != target.resource_type or not scoped.existing:
        problems.append(
            f"{where}: scoped to {'' if scoped.existing else 'a new '}{scoped.type}, "
            f"expected the existing {target.resource_type}"
        )
    if scoped.body.get("name") != target.name_param:
        problems.append(f"{where}: the {scoped.symbol} it is scoped to is not named by {target.name_param}")
    props = resolve(doc, grant.body.get("properties")) or {}
    role_expr = resolve(doc, props.get("roleDefinitionId"))
    roles = {g.lower() for s in strings_in(role_expr) for g in GUID.findall(s)}
    if roles != {target.role}:
        problems.append(f"{where}: grants {sorted(roles)}, expected {ALLOWED_ROLES[target.role][0]}")
    if props.get("principalId") != "principalId" or props.get("principalType") != "ServicePrincipal":
        problems.append(f"{where}: principal is not the principalId parameter as a ServicePrincipal")
    name = (grant.body.get("name") or {}).get("function") if isinstance(grant.body.get("name"), dict) else None
    arguments = (name or {}).get("parameters") or {}
    if not (
        (name or {}).get("type") == "guid"
        and _dotted(arguments.get("base_string")) == f"{scoped.symbol}.id"
        and arguments.get("extra_string_1") == "principalId"
        and str(arguments.get("extra_string_2")).lower() == target.role
        and len(arguments) == 3
    ):
        problems.append(f"{where}: name is not guid({scoped.symbol}.id, principalId, '{target.role}')")
    return problems


def _event_subscriptions(templates: Templates) -> Iterator[tuple[str, dict[str, Any], Resource]]:
    for path, text in templates.items():
        doc = parse(text)
        for res in resources(doc):
            if res.type.lower().endswith("/eventsubscriptions") and not res.existing:
                yield path, doc, res


def check_event_subscriptions(templates: Templates) -> list[str]:
    """Each event subscription: certificate event filter, function destination, retry policy, dead-letter."""
    problems = []
    subs = list(_event_subscriptions(templates))
    if not subs:
        problems.append("no Event Grid event subscription in any template")
    for path, doc, res in subs:
        where = f"{path}:{res.symbol}"
        props = resolve(doc, res.body.get("properties")) or {}
        types = (props.get("filter") or {}).get("includedEventTypes") or []
        if set(types) != CERTIFICATE_EVENT_TYPES:
            problems.append(f"{where}: includedEventTypes is {types}, expected {sorted(CERTIFICATE_EVENT_TYPES)}")
        destination = props.get("destination") or {}
        resource_id = (destination.get("properties") or {}).get("resourceId")
        target = " ".join(interpolate(doc, s) for s in strings_in(resource_id))
        if destination.get("endpointType") != "AzureFunction":
            problems.append(f"{where}: destination is not an AzureFunction")
        if not target.endswith(f"/functions/{EVENT_FUNCTION}"):
            problems.append(f"{where}: destination {target!r} is not the function {EVENT_FUNCTION}")
        retry = props.get("retryPolicy") or {}
        if not {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"} <= set(retry):
            problems.append(f"{where}: no retryPolicy with maxDeliveryAttempts and eventTimeToLiveInMinutes")
        dead = props.get("deadLetterWithResourceIdentity")
        if not dead:
            problems.append(f"{where}: no deadLetterWithResourceIdentity")
            continue
        if (dead.get("identity") or {}).get("type") != "SystemAssigned":
            problems.append(f"{where}: dead-letter does not use the topic's system-assigned identity")
        dest = dead.get("deadLetterDestination") or {}
        container = resolve(doc, (dest.get("properties") or {}).get("blobContainerName"))
        if dest.get("endpointType") != "StorageBlob" or container != settings.DEADLETTER_CONTAINER:
            problems.append(
                f"{where}: dead-letter goes to {container!r}, expected blob {settings.DEADLETTER_CONTAINER!r}"
            )
        if "deadLetterDestination" in props:
            problems.append(f"{where}: key-based deadLetterDestination next to the identity-based one")
    return problems


def _object_keys(doc: dict[str, Any], expr: Any) -> set[str]:
    expr = resolve(doc, expr)
    if isinstance(expr, dict) and "function" in expr:
        fn = expr["function"]
        keys: set[str] = set()
        if fn["type"] == "union":
            for arg in fn["parameters"].values():
                keys |= _object_keys(doc, arg)
        return keys
    if isinstance(expr, dict):
        return {k.strip("'") for k in expr}
    return set()


def app_settings(templates: Templates) -> dict[str, dict[str, Any]]:
    """path -> {setting name: value expression} of each sites/config 'appsettings' resource."""
    found = {}
    for path, text in templates.items():
        doc = parse(text)
        for res in resources(doc):
            if res.type == "Microsoft.Web/sites/config" and res.body.get("name") == "appsettings":
                names = _object_keys(doc, res.body.get("properties"))
                values = {}
                for name in names:
                    values[name] = _setting_value(doc, res.body.get("properties"), name)
                found[path] = values
    return found


def _setting_value(doc: dict[str, Any], expr: Any, name: str) -> Any:
    expr = resolve(doc, expr)
    if isinstance(expr, dict) and "function" in expr:
        value = None
        for arg in expr["function"]["parameters"].values():
            got = _setting_value(doc, arg, name)
            value = got if got is not None else value
        return value
    if isinstance(expr, dict):
        for key, value in expr.items():
            if key.strip("'") == name:
                return value
    return None


def required_azure_settings() -> set[str]:
    return {s.name for s in settings.ALL} - settings.DEV_ONLY - settings.PLATFORM_SET


def check_app_settings(templates: Templates) -> list[str]:
    problems = []
    found = app_settings(templates)
    if len(found) != 1:
        return [f"expected one appsettings resource, found {sorted(found)}"]
    ((path, values),) = found.items()
    names = set(values)
    for required in sorted(required_azure_settings()):
        # The host storage connection is the identity-based family AzureWebJobsStorage__*.
        if required == settings.STORAGE.name:
            if not any(n.startswith(f"{required}__") for n in names):
                problems.append(f"{path}: no identity-based {required}__* settings")
        elif required not in names:
            problems.append(f"{path}: app setting {required} (renewal/settings.py) is missing")
    for dev in sorted(settings.DEV_ONLY & names):
        problems.append(f"{path}: dev-only setting {dev} must not be set in Azure")
    for platform in sorted(settings.PLATFORM_SET & names):
        problems.append(f"{path}: {platform} is the platform's to set (it would claim Easy Auth is on)")
    if settings.STORAGE.name in names:
        problems.append(f"{path}: {settings.STORAGE.name} as a connection string; use the identity-based form")
    if values.get("AzureWebJobsStorage__credential") != "managedidentity":
        problems.append(f"{path}: AzureWebJobsStorage__credential is not managedidentity")
    for extra in ("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "APPLICATIONINSIGHTS_CONNECTION_STRING"):
        if extra not in names:
            problems.append(f"{path}: {extra} is missing")
    for flex_forbidden in ("FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE"):
        if flex_forbidden in names:
            problems.append(f"{path}: {flex_forbidden} is not allowed on Flex Consumption")
    return problems


def storage_names(templates: Templates) -> dict[str, set[str]]:
    """Resource type (queues/tables/containers) -> names the templates create (not `existing`)."""
    kinds = {
        "Microsoft.Storage/storageAccounts/queueServices/queues": "queues",
        "Microsoft.Storage/storageAccounts/tableServices/tables": "tables",
        CONTAINER: "containers",
    }
    found: dict[str, set[str]] = {k: set() for k in kinds.values()}
    for text in templates.values():
        doc = parse(text)
        for res in resources(doc):
            kind = kinds.get(res.type)
            if kind is None or res.existing:
                continue
            if res.loop_over is not None:
                names = resolve(doc, res.loop_over)
                found[kind] |= set(names) if isinstance(names, list) else {f"<unresolved {names}>"}
            else:
                found[kind].add(str(resolve(doc, res.body.get("name"))))
    return found


def check_storage_names(templates: Templates) -> list[str]:
    found = storage_names(templates)
    problems = []
    queues = {settings.JOBS_QUEUE, settings.DEPLOYMENTS_QUEUE}
    expected_queues = queues | {settings.poison_queue(q) for q in queues}
    if found["queues"] != expected_queues:
        problems.append(f"queues {sorted(found['queues'])} != {sorted(expected_queues)}")
    tables = {
        settings.LEDGER_TABLE,
        settings.CREATE_BUDGET_TABLE,
        settings.VERSION_FACTS_TABLE,
        settings.RENEWAL_WINDOWS_TABLE,
        settings.ROLLOUTS_TABLE,
    }
    if found["tables"] != tables:
        problems.append(f"tables {sorted(found['tables'])} != {sorted(tables)}")
    # The Flex deployment container is the only other one (its name is computed).
    named = {c for c in found["containers"] if not c.startswith(("app-package", "deploymentContainerName"))}
    expected_containers = {settings.CLAIMS_CONTAINER, settings.DEADLETTER_CONTAINER, settings.BACKUP_CONTAINER}
    if named != expected_containers:
        problems.append(f"containers {sorted(named)} != {sorted(expected_containers)}")
    # Every literal the dead-letter role and subscription use must be the same container.
    for path, text in templates.items():
        doc = parse(text)
        value = resolve(doc, "deadLetterContainerName")
        if value != "deadLetterContainerName" and value != settings.DEADLETTER_CONTAINER:
            problems.append(f"{path}: deadLetterContainerName is {value!r}, not {settings.DEADLETTER_CONTAINER!r}")
    return problems


# --- deploy-time constants ----------------------------------------------------------------------------
# Of an `existing` resource only these are known when a deployment starts (Bicep BCP120).
EXISTING_KNOWN_AT_START = frozenset({"id", "name", "type", "apiVersion"})
# Properties Bicep needs at the start of the deployment.
DEPLOY_TIME_PROPERTIES = ("location", "name", "scope")


def _accessed(expression: Any) -> list[tuple[str, str]]:
    """Every ``symbol.property`` a parsed expression reads."""
    found: list[tuple[str, str]] = []
    if isinstance(expression, dict):
        operator = expression.get("operator")
        if isinstance(operator, dict) and operator.get("type") == "property_accessor":
            operands = operator.get("operands") or {}
            first, second = operands.get("operand_1"), operands.get("operand_2")
            if isinstance(first, str) and isinstance(second, str):
                found.append((first, second))
        for value in expression.values():
            found += _accessed(value)
    elif isinstance(expression, list):
        for value in expression:
            found += _accessed(value)
    return found


def check_deploy_time_constants(templates: Templates) -> list[str]:
    """An existing resource's properties other than id/name/type/apiVersion used where Bicep needs a value
    at the start of the deployment (a resource's or module's location, name, scope; a loop's input or a
    condition) fail to compile (BCP120)."""
    problems = []
    for path, text in sorted(templates.items()):
        tree = parse(text)
        existing = {n for n, r in (tree.get("resources") or {}).items() if r.get("existing")}
        declarations = {**(tree.get("resources") or {}), **(tree.get("modules") or {})}
        for symbol, declaration in sorted(declarations.items()):
            config = declaration.get("config") or {}
            places: dict[str, Any] = {}
            if "loop_type" in config or "condition" in config:  # [for ...: {...}] / if (...) {...}
                places.update(loop=config.get("loop_type"), condition=config.get("condition"))
                config = config.get("config") or {}
            places.update({prop: config.get(prop) for prop in DEPLOY_TIME_PROPERTIES})
            for prop, expression in places.items():
                for target, accessed in _accessed(expression):
                    if target in existing and accessed not in EXISTING_KNOWN_AT_START:
                        problems.append(
                            f"{path}: {symbol}.{prop} uses {target}.{accessed} of an existing resource, which is "
                            "not known at the start of the deployment (BCP120); pass it as a module parameter"
                        )
    return problems
