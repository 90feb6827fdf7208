//! Records and store events for the tests of the reflector's state and of what is decided
//! over it.

use strata_core::spec::parse;
use strata_core::{keys, EnvName, Instance, NodeName, ServiceName};
use strata_store::{KeyValue, Revision, WatchEvent};

pub const MI: u64 = 1 << 20;

pub fn kv(key: String, value: Vec<u8>, revision: Revision) -> KeyValue {
    KeyValue {
        key,
        value,
        create_revision: revision,
        mod_revision: revision,
        version: 1,
        lease: None,
    }
}

pub fn put<T: serde::Serialize>(key: String, value: &T, revision: Revision) -> WatchEvent {
    WatchEvent::Put(kv(key, serde_json::to_vec(value).unwrap(), revision))
}

pub fn delete(key: String, revision: Revision) -> WatchEvent {
    WatchEvent::Delete {
        key,
        revision,
        prev: None,
    }
}

pub fn release(service: &str, number: u64, spec: &str) -> WatchEvent {
    let text = format!("[service.{service}]\ncommand = [\"x\"]\n{spec}");
    let spec = parse("t.toml", &text).unwrap().services.remove(0);
    let release = strata_testkit::fixtures::release("dev", service, number, spec);
    put(keys::release("dev", service, number), &release, number)
}

pub use strata_testkit::fixtures::instance;

pub fn placed(i: &Instance, revision: Revision) -> WatchEvent {
    put(keys::instance(&i.id), i, revision)
}

/// A ready node of epoch 1 in `zone`, with room for `memory_mib` MiB and 64 cores.
pub fn node(name: &str, zone: &str, memory_mib: u64, revision: Revision) -> WatchEvent {
    let node = strata_core::Node {
        labels: [("zone".to_string(), zone.to_string())].into(),
        ..strata_core::Node::ready(
            NodeName::new(name).unwrap(),
            strata_core::Resources {
                cpu_millis: 64_000,
                memory_bytes: memory_mib * MI,
            },
            vec![strata_core::spec::DriverKind::Exec],
        )
    };
    put(keys::node(name), &node, revision)
}

/// Service `name` of dev wanting `replicas` of release `release`.
pub fn service(name: &str, release: u64, replicas: u32, revision: Revision) -> WatchEvent {
    let service = strata_core::Service {
        desired_release: release,
        latest_release: release,
        latest_config: 1,
        ..strata_core::Service::new(
            EnvName::from_static("dev"),
            ServiceName::new(name).unwrap(),
            replicas,
            0,
        )
    };
    put(keys::service("dev", name), &service, revision)
}
