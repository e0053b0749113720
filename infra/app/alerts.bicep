// Azure Monitor alert rules over the service's OpenTelemetry metrics (renewal/metrics.py), which
// azure-monitor-opentelemetry sends to Application Insights as customMetrics (names unchanged):
//   1. a certificate expires within 7 days and has not been renewed;
//   2. renewals failed in the last hour;
//   3. a poison queue is not empty (failed work waiting for `replay`);
//   4. a certificate version has had no backup for more than a day.
// Each fires to the action group given (none: the alert is still raised and shown in the portal).

param location string
param tags object
param resourceToken string

@description('Resource id of the action group alerts notify; empty: alerts are raised without notification.')
param actionGroupId string = ''

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: 'appi-renewal-${resourceToken}'
}

var actions = {
  actionGroups: empty(actionGroupId) ? [] : [
    actionGroupId
  ]
}

// The sweep refreshes the expiry gauge nightly; a day's window always holds the latest value.
resource expiringNotRenewed 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-renewal-expiring-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Certificate expires within 7 days and was not renewed'
    description: 'renewal.certificate.expiration_timestamp is less than 7 days ahead: the renewal did not happen. Check the dashboard (ops/dashboard) and the failures list.'
    severity: 1
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "renewal.certificate.expiration_timestamp" | extend vault = tostring(customDimensions.vault), certificate = tostring(customDimensions.certificate), issuer = tostring(customDimensions.issuer) | summarize arg_max(timestamp, value) by vault, certificate, issuer | where unixtime_seconds_todatetime(value) < now(7d)'
          timeAggregation: 'Count'
          dimensions: [
            {
              name: 'vault'
              operator: 'Include'
              values: [
                '*'
              ]
            }
            {
              name: 'certificate'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource renewalFailures 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-renewal-failures-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Certificate renewals failed in the last hour'
    description: 'renewal.renewals with outcome failed or rejected: a CA refused, an issuer is misconfigured or a chain was not merged. The ledger row holds the reason.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "renewal.renewals" | extend outcome = tostring(customDimensions.outcome), issuer = tostring(customDimensions.issuer) | where outcome in ("failed", "rejected") | summarize failures = sum(valueSum) by issuer'
          timeAggregation: 'Total'
          metricMeasureColumn: 'failures'
          dimensions: [
            {
              name: 'issuer'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

// The depth gauge is exported while an instance runs; the host's own "moved to poison" trace
// covers the time between (Flex Consumption scales to zero).
resource poisonQueue 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-renewal-poison-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'A poison queue is not empty'
    description: 'Jobs or deployment notices failed every retry and wait in renewal-jobs-poison or deployments-poison. Fix the cause, then replay (dashboard, ops/replay or python -m renewal replay).'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT1H'
    criteria: {
      allOf: [
        {
          query: 'union (customMetrics | where name == "renewal.poison_queue.depth" | extend queue = tostring(customDimensions.queue) | summarize arg_max(timestamp, value) by queue | project queue, depth = value), (traces | where message has "-poison" and message has "MaxDequeueCount" | extend queue = extract("queue \'([^\']+)\'", 1, message) | summarize depth = todouble(count()) by queue) | summarize depth = max(depth) by queue'
          timeAggregation: 'Maximum'
          metricMeasureColumn: 'depth'
          dimensions: [
            {
              name: 'queue'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

output alertRuleIds array = [
  expiringNotRenewed.id
  renewalFailures.id
  poisonQueue.id
]

// A version older than a day without a backup in the archive (the backup failed or came late), or a
// backup that failed at all: the recovery point is slipping (docs/disaster-recovery.md).
resource backupOverdue 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'alert-renewal-backup-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Certificate version without a backup for more than a day'
    description: 'renewal.backups with outcome overdue or failed: a new version is not in the backup archive. Check the deployments poison queue and run `python -m renewal backup`.'
    severity: 2
    enabled: true
    scopes: [
      appInsights.id
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P1D'
    criteria: {
      allOf: [
        {
          query: 'customMetrics | where name == "renewal.backups" | extend outcome = tostring(customDimensions.outcome), vault = tostring(customDimensions.vault) | where outcome in ("overdue", "failed") | summarize misses = sum(valueSum) by vault'
          timeAggregation: 'Total'
          metricMeasureColumn: 'misses'
          dimensions: [
            {
              name: 'vault'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}
