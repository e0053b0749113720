// Second pass, deployed by infra/hooks after the function code is live: one Event Grid
// subscription per certificate vault's system topic, delivering to the function
// `on_certificate_event`. Event Grid validates an AzureFunction destination when the
// subscription is created, so this cannot be part of main.bicep, which runs before code deploy.
//
// Deploy (the hooks do this): az deployment sub create --location <region>
//   --template-file infra/subscriptions.bicep --parameters @<file with the values below>
// All inputs are outputs of main.bicep, kept in the azd environment.
targetScope = 'subscription'

@description('Resource ids of the vaults\' system topics (main.bicep output RENEWAL_EVENTGRID_SYSTEM_TOPIC_IDS).')
param systemTopicIds array

@description('Name of the azd environment: two environments that share a vault keep one subscription each.')
@minLength(1)
param environmentName string

@description('Resource id of the function app (main.bicep output RENEWAL_FUNCTION_APP_ID).')
param functionAppId string

@description('Resource id of the storage account holding the dead-letter container (main.bicep output RENEWAL_DEADLETTER_STORAGE_ID).')
param deadLetterStorageAccountId string

@description('Delivery attempts before an event is dead-lettered. Event Grid retries after 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h: about 11 attempts fit in the 24-hour time to live, which ends the retries first.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an event is retried before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

module eventSubscriptions 'app/event-subscription.bicep' = [for (topicId, i) in systemTopicIds: {
  name: 'event-subscription-${uniqueString(environmentName, topicId)}'
  scope: resourceGroup(split(topicId, '/')[2], split(topicId, '/')[4])
  params: {
    systemTopicName: split(topicId, '/')[8]
    subscriptionName: take('certificate-renewal-${environmentName}', 64)
    functionAppId: functionAppId
    deadLetterStorageAccountId: deadLetterStorageAccountId
    maxDeliveryAttempts: maxDeliveryAttempts
    eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  }
}]

output eventSubscriptionIds array = [for (topicId, i) in systemTopicIds: eventSubscriptions[i].outputs.eventSubscriptionId]
