// The event subscription of one certificate vault's system topic: near-expiry and expired
// certificate events go to the function `on_certificate_event`. Failed deliveries are retried
// (retryPolicy) and then dead-lettered as blobs into the dead-letter container, written with the
// topic's own identity (Storage Blob Data Contributor on that container, deadletter-access.bicep).
// `python -m renewal replay` lists those blobs and re-drives them (promise 3: nothing is lost).

@description('Name of the vault\'s system topic (in this resource group).')
param systemTopicName string

@description('Name of the event subscription; it carries the azd environment, so environments sharing a vault do not overwrite each other.')
@maxLength(64)
param subscriptionName string

param functionAppId string
param deadLetterStorageAccountId string
param maxDeliveryAttempts int = 30
param eventTimeToLiveInMinutes int = 1440

// function_app.py: the Event Grid trigger.
var functionName = 'on_certificate_event'
// renewal/settings.py: DEADLETTER_CONTAINER.
var deadLetterContainerName = 'eventgrid-deadletter'

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource certificateEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.CertificateNearExpiry'
        'Microsoft.KeyVault.CertificateExpired'
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output eventSubscriptionId string = certificateEvents.id
