//! [`Actor`]: who did something, as the event log names it. Stored and sent as one string
//! (`alice`, `agent:node-1`, `controller@server-1`, ...) so events read the same in every
//! version; parsed back into the variant it names.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum Actor {
    /// A person or CI, by its API token's name.
    User(String),
    /// A node's agent, reporting what it saw (`agent:NODE`).
    Agent(String),
    /// A node acting with its own credential through the API (`node:NODE`).
    Node(String),
    /// The controllers of the leading server (reconciler, liveness, rollouts):
    /// `controller@SERVER` once the log has named the server, `controller` before.
    Controller { server: Option<String> },
    /// The autoscaler, deciding from traffic.
    Autoscaler,
    /// Another server of the control plane (`server:ID`).
    Server(String),
    /// Whoever holds the join token, fetching a node's first credential.
    JoinToken,
    /// A caller without a credential (refused; named in the audit log).
    Anonymous,
}

impl Actor {
    /// The names only the platform's own actors go by; no API token may take one.
    pub const RESERVED: [&'static str; 4] = ["controller", "autoscaler", "join-token", "anonymous"];

    /// The controllers of server `server`.
    pub fn controller(server: impl Into<String>) -> Actor {
        Actor::Controller {
            server: Some(server.into()),
        }
    }

    /// Whether a controller (of any server) acted.
    pub fn is_controller(&self) -> bool {
        matches!(self, Actor::Controller { .. })
    }
}

impl Actor {
    fn text(&self) -> String {
        match self {
            Actor::User(name) => name.clone(),
            Actor::Agent(node) => format!("agent:{node}"),
            Actor::Node(node) => format!("node:{node}"),
            Actor::Controller { server: None } => "controller".into(),
            Actor::Controller {
                server: Some(server),
            } => format!("controller@{server}"),
            Actor::Autoscaler => "autoscaler".into(),
            Actor::Server(id) => format!("server:{id}"),
            Actor::JoinToken => "join-token".into(),
            Actor::Anonymous => "anonymous".into(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so that tables can align it (`{:16}`).
        f.pad(&self.text())
    }
}

impl From<String> for Actor {
    fn from(text: String) -> Actor {
        if let Some(node) = text.strip_prefix("agent:") {
            return Actor::Agent(node.to_string());
        }
        if let Some(node) = text.strip_prefix("node:") {
            return Actor::Node(node.to_string());
        }
        if let Some(id) = text.strip_prefix("server:") {
            return Actor::Server(id.to_string());
        }
        if let Some(server) = text.strip_prefix("controller@") {
            return Actor::controller(server);
        }
        match text.as_str() {
            "controller" => Actor::Controller { server: None },
            "autoscaler" => Actor::Autoscaler,
            "join-token" => Actor::JoinToken,
            "anonymous" => Actor::Anonymous,
            _ => Actor::User(text),
        }
    }
}

impl From<Actor> for String {
    fn from(actor: Actor) -> String {
        actor.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_actor_reads_back_as_itself() {
        let table = [
            (Actor::User("alice".into()), "alice"),
            (Actor::Agent("node-1".into()), "agent:node-1"),
            (Actor::Node("node-1".into()), "node:node-1"),
            (Actor::Controller { server: None }, "controller"),
            (Actor::controller("server-1"), "controller@server-1"),
            (Actor::Autoscaler, "autoscaler"),
            (Actor::Server("s1".into()), "server:s1"),
            (Actor::JoinToken, "join-token"),
            (Actor::Anonymous, "anonymous"),
        ];
        for (actor, text) in table {
            assert_eq!(actor.to_string(), text);
            assert_eq!(format!("{actor:<24}|").len(), 25, "pads like a string");
            assert_eq!(Actor::from(text.to_string()), actor, "{text}");
            let json = serde_json::to_string(&actor).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<Actor>(&json).unwrap(), actor);
        }
    }

    #[test]
    fn a_user_cannot_be_named_like_the_platform() {
        // Token names are DNS labels (no `:` or `@`); these are the labels to refuse.
        for name in Actor::RESERVED {
            assert_ne!(Actor::from(name.to_string()), Actor::User(name.into()));
        }
    }
}
