//! hello-wasm: Strata's example WebAssembly service, a `wasi:http/proxy` component.
//!
//! Routes:
//! - `GET /`: `Hello from wasm: {GREETING}` (`GREETING` comes from the service's config).
//! - `GET /healthz`: `ok`.
//! - `GET /env`: the names of the environment variables the guest sees, one per line.
//! - `GET /call/{service}`: calls `http://{service}/` (another Strata service, by name) and
//!   answers with its body, or `502` and the error the platform gave (a call to anything but
//!   a service name is refused with `HttpRequestDenied`).
//! - `GET /loop`: never returns (the platform's per-request deadline ends it with a 504).
//! - `GET /trap`: panics (the platform answers 500 and logs the trap).
//! - `GET /alloc`: allocates until memory runs out (the platform's memory limit stops it).
//!
//! Every request runs in a fresh instance: nothing here survives from one request to the next.

use std::io::{Read, Write};

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingRequest, OutgoingResponse, ResponseOutparam,
    Scheme,
};

struct Hello;

impl Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query().unwrap_or_else(|| "/".into());
        let path = path_with_query.split('?').next().unwrap_or("/").to_string();
        match path.as_str() {
            "/" => {
                let greeting =
                    std::env::var("GREETING").unwrap_or_else(|_| "(no GREETING set)".into());
                respond(out, 200, &format!("Hello from wasm: {greeting}\n"));
            }
            "/healthz" => respond(out, 200, "ok"),
            "/env" => {
                // The names (not the values) of the environment the platform granted.
                let mut names: Vec<String> = std::env::vars().map(|(name, _)| name).collect();
                names.sort();
                respond(out, 200, &format!("{}\n", names.join("\n")));
            }
            "/loop" => {
                eprintln!("hello-wasm: /loop: looping forever");
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/trap" => panic!("hello-wasm: /trap asked for a panic"),
            "/alloc" => {
                eprintln!("hello-wasm: /alloc: allocating until memory runs out");
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // 1 MiB at a time, touched so it is really used.
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            _ => match path.strip_prefix("/call/") {
                Some(service) if !service.is_empty() => {
                    let service = service.trim_end_matches('/');
                    match call(service) {
                        Ok(body) => respond(out, 200, &body),
                        Err(error) => {
                            respond(out, 502, &format!("call to {service} failed: {error}\n"))
                        }
                    }
                }
                _ => respond(out, 404, &format!("no route for {path}\n")),
            },
        }
    }
}

/// `GET http://{authority}/` through the host's outgoing handler: the body, or why not.
fn call(authority: &str) -> Result<String, String> {
    let request = OutgoingRequest::new(Fields::new());
    request
        .set_scheme(Some(&Scheme::Http))
        .map_err(|()| "invalid scheme".to_string())?;
    request
        .set_authority(Some(authority))
        .map_err(|()| format!("invalid authority {authority:?}"))?;
    request
        .set_path_with_query(Some("/"))
        .map_err(|()| "invalid path".to_string())?;
    let pending = outgoing_handler::handle(request, None).map_err(|e| e.to_string())?;
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(code.to_string()),
        Some(Err(())) => return Err("response already taken".into()),
        None => return Err("no response".into()),
    };
    let status = response.status();
    let body = response
        .consume()
        .map_err(|()| "response body already taken".to_string())?;
    let mut bytes = Vec::new();
    {
        let mut stream = body
            .stream()
            .map_err(|()| "response body stream already taken".to_string())?;
        stream
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the response body: {e}"))?;
    }
    drop(body);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if (200..300).contains(&status) {
        Ok(text)
    } else {
        Err(format!("status {status}: {text}"))
    }
}

/// Sends a complete plain-text response.
fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::from_list(&[
        (
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (
            "content-length".to_string(),
            body.len().to_string().into_bytes(),
        ),
    ])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let mut stream = outgoing.write().expect("stream taken once");
        if let Err(error) = stream.write_all(body.as_bytes()) {
            eprintln!("hello-wasm: writing the response body: {error}");
        }
        let _ = stream.flush();
    }
    if let Err(error) = OutgoingBody::finish(outgoing, None) {
        eprintln!("hello-wasm: finishing the response body: {error}");
    }
}

wasip2::http::proxy::export!(Hello);
