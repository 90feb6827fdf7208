//! A service that misbehaves on purpose, for the tests of what Strata says about it. It
//! answers every HTTP request `200 ok` (so health checks of any path pass while it serves) and
//! takes one mode:
//!
//! - `exit-after MS`: serves on `HOST:PORT` for MS milliseconds, then prints a fatal error and
//!   exits with code 1 (a program that crashes on a bad configuration just after it starts);
//! - `wrong-port PORT`: serves on `HOST:PORT` given here, not the one in `$PORT`;
//! - `hang-after MS`: serves for MS milliseconds, then stops answering while it keeps running
//!   (a deadlocked server; connections still queue in the kernel's backlog);
//! - `serve`: serves on `HOST:PORT`, like a well-behaved service;
//! - `eat-memory`: serves, and takes memory (1 MiB a millisecond, touched) until it is killed;
//! - `write-file PATH TEXT`: writes TEXT to PATH (as an instance leaves data in its writable
//!   layer), says so, then serves.
//!
//! With `SAY` in its environment, it first prints that line (what an instance logs); with
//! `WRITE_PATH` and `WRITE_TEXT`, it first writes that text to that file (what an instance
//! leaves behind, whatever its mode).
//!
//! Standard library only, so that a JEOS image of it holds just it and its libc.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(line) = std::env::var("SAY") {
        println!("{line}");
    }
    if let (Ok(path), Ok(text)) = (std::env::var("WRITE_PATH"), std::env::var("WRITE_TEXT")) {
        write_file(&path, &text);
    }
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8000".into());
    let number = |i: usize| -> u64 {
        args.get(i)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let (listen_port, serve_for) = match args.first().map(String::as_str) {
        Some("exit-after") => (port, Some(Duration::from_millis(number(1)))),
        Some("hang-after") => (port, Some(Duration::from_millis(number(1)))),
        Some("wrong-port") => (number(1).to_string(), None),
        Some("serve") => (port, None),
        Some("write-file") => {
            let (Some(path), Some(text)) = (args.get(1), args.get(2)) else {
                usage()
            };
            write_file(path, text);
            (port, None)
        }
        Some("eat-memory") => {
            std::thread::spawn(eat_memory);
            (port, None)
        }
        _ => usage(),
    };
    let address = format!("{host}:{listen_port}");
    let listener = TcpListener::bind(&address).unwrap_or_else(|error| {
        eprintln!("misbehave: cannot listen on {address}: {error}");
        std::process::exit(2)
    });
    println!("misbehave: listening on {address}");
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let started = Instant::now();
    loop {
        if serve_for.is_some_and(|limit| started.elapsed() >= limit) {
            break;
        }
        match listener.accept() {
            Ok((stream, _)) => answer(stream),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(error) => eprintln!("misbehave: accept: {error}"),
        }
    }
    if args[0] == "exit-after" {
        eprintln!("misbehave: fatal: invalid configuration, exiting");
        std::process::exit(1);
    }
    // hang-after: alive, listening, answering nothing.
    eprintln!("misbehave: hanging");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn write_file(path: &str, text: &str) {
    if let Err(error) = std::fs::write(path, format!("{text}\n")) {
        eprintln!("misbehave: cannot write {path}: {error}");
        std::process::exit(2)
    }
    println!("misbehave: wrote {path}");
}

fn eat_memory() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![1u8; 1 << 20]);
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn answer(mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut request = [0u8; 4096];
    let _ = stream.read(&mut request);
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n");
}

fn usage() -> ! {
    eprintln!(
        "usage: misbehave exit-after MS | hang-after MS | wrong-port PORT | serve | eat-memory | write-file PATH TEXT"
    );
    std::process::exit(2)
}
