//! Where the extension points meet the engine: the event bus, frame filters and sinks, custom
//! types and protocol extensions. A session with none of them has no `Ext` at all (one `None`
//! check per frame), so it pays nothing.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::{Error, Result};
use crate::events::{Event, EventBus, EventKind};
use crate::extension::{Direction, Extensions, FrameFilter, FrameSink};
use crate::message::{Message, MessageKind, SystemMessage};
use crate::transport::TransportMetrics;

/// The extension points of a session, as [`Options`](crate::Options) carries them.
#[derive(Clone, Default)]
pub(crate) struct ExtConfig {
    pub events: Option<EventBus>,
    pub filters: Vec<Arc<dyn FrameFilter>>,
    pub sinks: Vec<Arc<dyn FrameSink>>,
    pub extensions: Option<Extensions>,
    /// The plugins' ([`OptionsBuilder::plugins`](crate::options::OptionsBuilder::plugins)),
    /// after `extensions`.
    pub plugin_extensions: Option<Extensions>,
}

impl ExtConfig {
    /// The engine's view, or `None` when nothing is configured.
    pub(crate) fn build(&self, metrics: Arc<TransportMetrics>) -> Option<Arc<Ext>> {
        let extensions = match (&self.extensions, &self.plugin_extensions) {
            (Some(mine), Some(plugins)) => Some(mine.clone().merge(plugins)),
            (mine, plugins) => mine.clone().or_else(|| plugins.clone()),
        }
        .filter(|e| !e.is_empty());
        if self.events.is_none()
            && self.filters.is_empty()
            && self.sinks.is_empty()
            && extensions.is_none()
        {
            return None;
        }
        Some(Arc::new(Ext {
            events: self.events.clone(),
            filters: self.filters.clone(),
            sinks: self.sinks.clone(),
            extensions,
            metrics,
        }))
    }
}

/// What the engine consults per frame.
pub(crate) struct Ext {
    pub events: Option<EventBus>,
    filters: Vec<Arc<dyn FrameFilter>>,
    sinks: Vec<Arc<dyn FrameSink>>,
    extensions: Option<Extensions>,
    metrics: Arc<TransportMetrics>,
}

impl Ext {
    /// A frame the SDK writes: `BeforeSend` handlers (may rewrite or refuse), then the filters,
    /// then the sinks see what goes to the transport.
    pub(crate) async fn outbound(&self, mut frame: Bytes) -> Result<Bytes> {
        if let Some(bus) = &self.events
            && bus.has(&EventKind::BeforeSend)
        {
            let chain = bus.run(Event::BeforeSend { frame }).await;
            if let Some(reason) = chain.refused {
                return Err(Error::Refused { reason });
            }
            let Event::BeforeSend { frame: rewritten } = chain.event else {
                return Err(Error::Closed);
            };
            frame = rewritten;
        }
        for f in &self.filters {
            frame = f.outbound(frame);
        }
        for s in &self.sinks {
            s.frame(Direction::SdkToCli, &frame);
        }
        Ok(frame)
    }

    /// A frame the CLI wrote, on the reader: sinks see it (through the filters' view), then
    /// the protocol extensions run. Returns the frame to route (`None`: swallowed) and a reply
    /// to write back.
    pub(crate) fn inbound(&self, frame: Bytes) -> (Option<Bytes>, Option<Bytes>) {
        if !self.sinks.is_empty() {
            let mut view = frame.clone();
            for f in &self.filters {
                view = f.sink_view(view);
            }
            for s in &self.sinks {
                s.frame(Direction::CliToSdk, &view);
            }
        }
        match &self.extensions {
            Some(e) => e.intercept(Direction::CliToSdk, frame),
            None => (Some(frame), None),
        }
    }

    /// A frame of a registered custom type, decoded; `None` for everything else.
    pub(crate) fn decode(&self, msg: &Message) -> Option<Result<Message>> {
        let e = self.extensions.as_ref().filter(|e| e.has_types())?;
        if !msg.is_other_type() {
            return None;
        }
        e.decode(msg.raw().clone())
    }
}

/// Event state of one session's consumer (`MessageRx`).
pub(crate) struct RxEvents {
    pub bus: EventBus,
    ext: Arc<Ext>,
    /// The events of the item below, running; the item is yielded once they are done.
    pub pending: Option<(BoxFuture<'static, ()>, Option<Result<Message>>)>,
    reconnects: u64,
    session_id: Option<String>,
    ended: bool,
}

impl RxEvents {
    pub(crate) fn new(ext: &Arc<Ext>) -> Option<RxEvents> {
        let bus = ext.events.clone()?;
        Some(RxEvents {
            bus,
            reconnects: ext.metrics.snapshot().reconnects,
            ext: ext.clone(),
            pending: None,
            session_id: None,
            ended: false,
        })
    }

    /// The events `item` raises, as one future, or `None` when no handler wants any.
    pub(crate) fn events_of(
        &mut self,
        item: &Option<Result<Message>>,
        termination: impl FnOnce() -> Option<crate::transport::Termination>,
    ) -> Option<BoxFuture<'static, ()>> {
        let bus = &self.bus;
        let mut events = Vec::new();
        if bus.has(&EventKind::Reconnect) {
            let now = self.ext.metrics.snapshot().reconnects;
            if now > self.reconnects {
                self.reconnects = now;
                events.push(Event::Reconnect { reconnects: now });
            }
        }
        match item {
            Some(Ok(msg)) => {
                if bus.has(&EventKind::SessionMoved)
                    && msg.is_system()
                    && let MessageKind::System(SystemMessage::Init(init)) = msg.kind()
                    && let Some(sid) = &init.session_id
                    && self.session_id.as_ref() != Some(sid)
                {
                    events.push(Event::SessionMoved {
                        from: self.session_id.replace(sid.clone()),
                        to: sid.clone(),
                    });
                }
                if bus.has(&EventKind::MessageReceived) {
                    events.push(Event::MessageReceived(msg.clone()));
                }
                if msg.is_result() && bus.has(&EventKind::TurnResult) {
                    events.push(Event::TurnResult(msg.clone()));
                }
            }
            Some(Err(e)) => {
                if bus.has(&EventKind::Error) {
                    events.push(Event::Error {
                        message: e.to_string(),
                        frame_error: e.is_frame_error(),
                    });
                }
            }
            None => {
                if !self.ended {
                    self.ended = true;
                    if bus.has(&EventKind::Disconnect) {
                        events.push(Event::Disconnect {
                            termination: termination(),
                        });
                    }
                }
            }
        }
        if events.is_empty() {
            return None;
        }
        let bus = bus.clone();
        Some(Box::pin(async move {
            for e in events {
                bus.emit(e).await;
            }
        }))
    }
}
