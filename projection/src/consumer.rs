//! The RabbitMQ consumer loop: manual acks after the read-model write, bounded prefetch,
//! poison messages to the dead-letter queue, reconnection after outages, graceful stop.

use futures::StreamExt;
use messaging::lapin::message::Delivery;
use messaging::lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions,
};
use messaging::lapin::types::FieldTable;
use messaging::{ConsumerTopology, Pool};
use platform::retry::{next_delay, reconnect_backoff};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::decode::decode_body;
use crate::projector::Projector;
use crate::read_model::ReadModel;

/// Consumes the read model's queue until `stop`. On stop it cancels the subscription, finishes
/// and acknowledges the message in hand, and returns.
pub async fn run_consumer<M: ReadModel>(
    pool: Pool,
    topology: ConsumerTopology,
    projector: Projector<M>,
    stop: CancellationToken,
) {
    let mut delays = reconnect_backoff();
    loop {
        let result: Result<(), messaging::BrokerError> = async {
            let connection = pool.get().await?;
            let channel = connection.create_channel().await?;
            topology.declare(&channel).await?;
            let tag = format!("projection-{}", std::process::id());
            let mut deliveries = channel
                .basic_consume(
                    topology.queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            projector.progress().set_consuming(true);
            tracing::info!(queue = %topology.queue, "consuming events");
            delays = reconnect_backoff();
            loop {
                tokio::select! {
                    biased;
                    () = stop.cancelled() => {
                        let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                        return Ok(());
                    }
                    delivery = deliveries.next() => match delivery {
                        Some(Ok(delivery)) => handle(&projector, delivery, &stop).await?,
                        Some(Err(err)) => return Err(err.into()),
                        None => return Ok(()),
                    },
                }
            }
        }
        .await;
        projector.progress().set_consuming(false);
        if stop.is_cancelled() {
            tracing::info!("consumer stopped");
            return;
        }
        let delay = next_delay(&mut delays);
        match result {
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?delay, "consumer disconnected; reconnecting")
            }
            Ok(()) => {
                tracing::warn!(retry_in = ?delay, "subscription ended by the broker; resubscribing")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Applies one delivery and settles it. A message is acknowledged only after its write.
async fn handle<M: ReadModel>(
    projector: &Projector<M>,
    delivery: Delivery,
    stop: &CancellationToken,
) -> Result<(), messaging::BrokerError> {
    let event = match decode_body(&delivery.data) {
        Ok(event) => event,
        Err(err) => {
            tracing::error!(error = %err, "poison message: dead-lettering it");
            projector.progress().dead_lettered();
            delivery.acker.nack(BasicNackOptions { requeue: false, ..Default::default() }).await?;
            return Ok(());
        }
    };
    projector.progress().received(event.global_position);
    // Continue the command's trace: a child of the traceparent the relay put in the headers.
    let span = tracing::info_span!(
        "projection.consume",
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        event_type = event.event.event_type(),
        course_id = %event.course_id,
        version = event.version,
    );
    if let Some(traceparent) = header(&delivery, "traceparent") {
        platform::propagation::set_parent_from_traceparent(&span, &traceparent);
    }
    apply(projector, &delivery, &event, stop).instrument(span).await
}

fn header(delivery: &Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        messaging::lapin::types::AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}

async fn apply<M: ReadModel>(
    projector: &Projector<M>,
    delivery: &Delivery,
    event: &crate::fold::StoredEvent,
    stop: &CancellationToken,
) -> Result<(), messaging::BrokerError> {
    let mut delays = reconnect_backoff();
    loop {
        match projector.handle(event).await {
            Ok(_) => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
                return Ok(());
            }
            Err(err) if err.is_transient() => {
                // Storage or event store down: hold the message and retry, rather than burning
                // its delivery attempts. On stop, leave it unacknowledged for redelivery.
                let delay = next_delay(&mut delays);
                tracing::warn!(error = %err, retry_in = ?delay, "cannot apply event yet");
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stop.cancelled() => return Ok(()),
                }
            }
            Err(err) => {
                // Requeue: the quorum queue counts deliveries and dead-letters the message
                // once it has failed `delivery_limit` times.
                tracing::error!(error = %err, "event failed; requeueing (dead-lettered after the delivery limit)");
                delivery
                    .acker
                    .nack(BasicNackOptions { requeue: true, ..Default::default() })
                    .await?;
                return Ok(());
            }
        }
    }
}
