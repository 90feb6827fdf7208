//! The node's resolver for its instances: it answers the names of the TCP services of the
//! asking instance's environment with their addresses on this node
//! ([`super::addresses`]), and nothing else. An instance's `/etc/resolv.conf` names it (at
//! the bridge's gateway, port 53): `redis` or `redis.ENV` is the address the node's TCP proxy
//! answers for `redis`. Who asks is known from the query's source address (an instance's own
//! address on the bridge); a query from anywhere else is refused.
//!
//! Messages are parsed and written with hickory-proto (the DNS wire format, well kept);
//! nothing here resolves names of the outside world: instances reach only the mesh.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use tokio::net::UdpSocket;

/// How long an answer may be cached: a service's address does not change on a node.
const TTL_SECONDS: u32 = 30;

/// Answers a question for `name` (lowercase, without the trailing dot) asked by an instance
/// of environment `env`: the address of that TCP service, if the name is one.
pub type NameLookup = Arc<dyn Fn(&str, &str) -> Option<Ipv4Addr> + Send + Sync>;

/// The environment of the instance at a source address, if it is one of this node's.
pub type EnvOf = Arc<dyn Fn(IpAddr) -> Option<String> + Send + Sync>;

/// Whether the node knows its services yet (its routing table was loaded once): until then
/// a name is not known to be unknown, and the answer is SERVFAIL (tried again), never a
/// NXDOMAIN a client would cache.
pub type Ready = Arc<dyn Fn() -> bool + Send + Sync>;

/// The answer to the DNS message `query`, from an instance of `env` (`None`: not an instance
/// of this node, refused), the node's services known (`ready`) or not; `None` when `query`
/// is not a DNS query at all (dropped).
pub fn answer(
    query: &[u8],
    env: Option<&str>,
    ready: bool,
    lookup: &dyn Fn(&str, &str) -> Option<Ipv4Addr>,
) -> Option<Vec<u8>> {
    let request = Message::from_vec(query).ok()?;
    if request.message_type() != MessageType::Query {
        return None;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(false)
        .set_authoritative(true);
    response.add_queries(request.queries().to_vec());
    let code = match (request.op_code(), env, request.queries()) {
        (OpCode::Query, Some(_), [_]) if !ready => ResponseCode::ServFail,
        (OpCode::Query, Some(env), [question]) => {
            let asked = question.name().to_ascii().to_ascii_lowercase();
            let name = asked.trim_end_matches('.');
            match lookup(env, name) {
                Some(address) => {
                    if question.query_type() == RecordType::A
                        || question.query_type() == RecordType::ANY
                    {
                        response.add_answer(Record::from_rdata(
                            question.name().clone(),
                            TTL_SECONDS,
                            RData::A(A(address)),
                        ));
                    }
                    // Known, but no record of that type (AAAA): an empty answer, not an error.
                    ResponseCode::NoError
                }
                None => ResponseCode::NXDomain,
            }
        }
        (OpCode::Query, Some(_), _) => ResponseCode::FormErr,
        (OpCode::Query, None, _) => ResponseCode::Refused,
        _ => ResponseCode::NotImp,
    };
    response.set_response_code(code);
    response.to_vec().ok()
}

/// The service a name asked by an instance of `env` stands for: `NAME` or `NAME.ENV`.
pub fn service_named<'n>(name: &'n str, env: &str) -> Option<&'n str> {
    let service = match name.split_once('.') {
        None => name,
        Some((service, rest)) if rest == env => service,
        Some(_) => return None,
    };
    (!service.is_empty()).then_some(service)
}

/// Answers queries on `socket` until the task is dropped.
pub async fn serve(socket: UdpSocket, env_of: EnvOf, ready: Ready, lookup: NameLookup) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, from): (usize, SocketAddr) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::debug!(%error, "resolver receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let env = env_of(from.ip());
        if let Some(reply) = answer(&buffer[..length], env.as_deref(), ready(), &*lookup) {
            if let Err(error) = socket.send_to(&reply, from).await {
                tracing::debug!(%error, %from, "resolver answer not sent");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(7)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true);
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn lookup(env: &str, name: &str) -> Option<Ipv4Addr> {
        match (env, service_named(name, env)) {
            ("dev", Some("redis")) => Some(Ipv4Addr::new(10, 90, 1, 2)),
            ("prod", Some("redis")) => Some(Ipv4Addr::new(10, 90, 3, 4)),
            _ => None,
        }
    }

    /// (name, type, asking environment, answer's code, address answered)
    type Case = (
        &'static str,
        RecordType,
        Option<&'static str>,
        ResponseCode,
        Option<Ipv4Addr>,
    );

    #[test]
    fn names_of_the_callers_environment_are_answered_and_nothing_else() {
        // (name, type, asking env, code, address answered)
        let redis_dev = Some(Ipv4Addr::new(10, 90, 1, 2));
        let table: &[Case] = &[
            (
                "redis.",
                RecordType::A,
                Some("dev"),
                ResponseCode::NoError,
                redis_dev,
            ),
            (
                "REDIS.",
                RecordType::A,
                Some("dev"),
                ResponseCode::NoError,
                redis_dev,
            ),
            (
                "redis.dev.",
                RecordType::A,
                Some("dev"),
                ResponseCode::NoError,
                redis_dev,
            ),
            (
                "redis.",
                RecordType::A,
                Some("prod"),
                ResponseCode::NoError,
                Some(Ipv4Addr::new(10, 90, 3, 4)),
            ),
            // Another environment's service by its full name: not from here.
            (
                "redis.prod.",
                RecordType::A,
                Some("dev"),
                ResponseCode::NXDomain,
                None,
            ),
            (
                "redis.",
                RecordType::AAAA,
                Some("dev"),
                ResponseCode::NoError,
                None,
            ),
            (
                "example.com.",
                RecordType::A,
                Some("dev"),
                ResponseCode::NXDomain,
                None,
            ),
            (
                "postgres.",
                RecordType::A,
                Some("dev"),
                ResponseCode::NXDomain,
                None,
            ),
            // Not an instance of this node.
            ("redis.", RecordType::A, None, ResponseCode::Refused, None),
        ];
        for (name, kind, env, code, address) in table {
            let reply = answer(&query(name, *kind), *env, true, &lookup).expect("a reply");
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!(reply.response_code(), *code, "{name} {kind:?} from {env:?}");
            assert_eq!(reply.id(), 7);
            let answered: Vec<Ipv4Addr> = reply
                .answers()
                .iter()
                .filter_map(|r| match r.data() {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect();
            assert_eq!(
                answered,
                address.iter().copied().collect::<Vec<_>>(),
                "{name}"
            );
        }
    }

    #[test]
    fn garbage_and_answers_get_no_reply() {
        assert!(answer(b"", Some("dev"), true, &lookup).is_none());
        assert!(answer(&[0xff; 64], Some("dev"), true, &lookup).is_none());
        let mut reply = Message::from_vec(&query("redis.", RecordType::A)).unwrap();
        reply.set_message_type(MessageType::Response);
        assert!(answer(&reply.to_vec().unwrap(), Some("dev"), true, &lookup).is_none());
    }

    #[test]
    fn before_the_services_are_known_a_name_is_not_said_unknown() {
        for name in ["redis.", "nobody."] {
            let reply = answer(&query(name, RecordType::A), Some("dev"), false, &lookup).unwrap();
            let reply = Message::from_vec(&reply).unwrap();
            assert_eq!(reply.response_code(), ResponseCode::ServFail, "{name}");
            assert!(reply.answers().is_empty());
        }
    }

    #[test]
    fn a_name_is_a_service_alone_or_with_the_callers_environment() {
        assert_eq!(service_named("redis", "dev"), Some("redis"));
        assert_eq!(service_named("redis.dev", "dev"), Some("redis"));
        assert_eq!(service_named("redis.prod", "dev"), None);
        assert_eq!(service_named("a.b.dev", "dev"), None);
        assert_eq!(service_named("", "dev"), None);
        assert_eq!(service_named(".dev", "dev"), None);
    }
}
