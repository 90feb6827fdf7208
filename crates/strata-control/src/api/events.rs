//! The event log: what happened, who caused it, and why; listed, or followed as it grows.
//! Both show a caller only the events of the environments its token covers (cluster-wide
//! events, such as a node's, only to a token for every environment).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use strata_core::api::EventList;
use strata_core::auth::Principal;
use strata_core::{keys, Event};
use strata_store::WatchEvent;
use utoipa::IntoParams;

use super::Plane;
use crate::guard::Caller;
use crate::ControlError;

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventParams {
    /// Only events of this service.
    pub service: Option<String>,
    /// The newest this many (default 100).
    pub limit: Option<usize>,
}

/// Whether `principal` may see `event`, and it is of `service` (when one is asked for).
fn shown(principal: &Principal, service: Option<&str>, event: &Event) -> bool {
    let visible = match &event.env {
        Some(env) => principal.sees_env(env),
        None => principal.sees_cluster(),
    };
    visible && service.is_none_or(|service| event.service.as_deref() == Some(service))
}

/// The event log, oldest first.
#[utoipa::path(get, path = "/v1/events", params(EventParams),
    responses((status = 200, body = EventList)))]
pub async fn list_events(
    caller: Caller,
    State(plane): Plane,
    Query(params): Query<EventParams>,
) -> Result<Json<EventList>, ControlError> {
    let mut events = plane
        .events(params.service.as_deref(), params.limit.unwrap_or(100))
        .await?;
    events.retain(|event| shown(&caller.principal, None, event));
    Ok(Json(EventList { events }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct FollowParams {
    /// Only events of this service.
    pub service: Option<String>,
}

/// New events as they are recorded: server-sent events, one `data:` line of [`Event`] JSON
/// each (`strata events -f`).
#[utoipa::path(get, path = "/v1/events/follow", params(FollowParams),
    responses((status = 200, content_type = "text/event-stream", body = Event)))]
pub async fn follow_events(
    caller: Caller,
    State(plane): Plane,
    Query(params): Query<FollowParams>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ControlError> {
    let slot = plane.watchers().enter(&caller.name())?;
    let changes = plane.store().watch(keys::EVENTS, 0).await?;
    let principal = caller.principal;
    let events = changes.filter_map(move |change| {
        let _held = &slot;
        let event = match change {
            Ok(WatchEvent::Put(kv)) => serde_json::from_slice::<Event>(&kv.value).ok(),
            _ => None,
        };
        let shown = event
            .filter(|event| shown(&principal, params.service.as_deref(), event))
            .and_then(|event| SseEvent::default().json_data(event).ok());
        futures::future::ready(shown.map(Ok))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(10))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_core::auth::{EnvScope, Role};

    fn event(env: Option<&'static str>, service: Option<&'static str>) -> Event {
        Event {
            seq: 1,
            at: 1,
            kind: strata_core::EventKind::ReleaseCreated,
            env: env.map(strata_core::EnvName::from_static),
            service: service.map(strata_core::ServiceName::from_static),
            instance: None,
            node: None,
            message: String::new(),
            actor: strata_core::Actor::User("admin".into()),
        }
    }

    #[test]
    fn events_are_shown_by_scope_and_service() {
        let dev_viewer = Principal::User {
            name: "v".into(),
            role: Role::Viewer,
            envs: EnvScope::Only(["dev".to_string()].into()),
        };
        let admin = Principal::User {
            name: "a".into(),
            role: Role::Admin,
            envs: EnvScope::All,
        };
        #[rustfmt::skip]
        let cases = [
            ("its environment", &dev_viewer, None, event(Some("dev"), Some("web")), true),
            ("another environment", &dev_viewer, None, event(Some("prod"), Some("web")), false),
            ("a node's event, to a scoped token", &dev_viewer, None, event(None, None), false),
            ("a node's event, to an all-env token", &admin, None, event(None, None), true),
            ("the service asked for", &admin, Some("web"), event(Some("dev"), Some("web")), true),
            ("another service", &admin, Some("web"), event(Some("dev"), Some("db")), false),
            ("anonymous", &Principal::Anonymous, None, event(Some("dev"), None), false),
        ];
        for (name, principal, service, event, expected) in cases {
            assert_eq!(shown(principal, service, &event), expected, "{name}");
        }
    }
}
