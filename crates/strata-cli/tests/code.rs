//! Code with a command, end to end: `artifact` names a directory (or a tar of one) that is
//! unpacked as each instance's working directory, and `command` runs in it, as
//! docs/spec.md shows with `command = ["python3", "app.py"]`.

mod common;

use common::{misbehave_bin, send, stderr, text_of, write_file, Dev};

const APP_PY: &str = r#"import http.server, os

class Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("greeting.txt") as f:
            body = f.read().encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

http.server.HTTPServer((os.environ["HOST"], int(os.environ["PORT"])), Hello).serve_forever()
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_of_code_runs_with_its_command() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("app.py"), APP_PY).unwrap();
    std::fs::write(app.join("greeting.txt"), "hello from app.py\n").unwrap();
    // A program shipped with its code, started by a script by relative paths.
    std::fs::copy(misbehave_bin(), app.join("misbehave")).unwrap();
    std::fs::write(app.join("run.sh"), "exec ./misbehave serve\n").unwrap();
    let spec = write_file(
        dir.path(),
        "strata.toml",
        "[service.api]\nartifact = \"app\"\ncommand = [\"python3\", \"app.py\"]\n\n\
         [service.tool]\nartifact = \"app\"\ncommand = [\"sh\", \"run.sh\"]\n",
    );
    let dev = Dev::start(&dir.path().join("data"));
    dev.deploy(&spec, &["--timeout", "60s"]);
    for (host, body) in [
        ("api.dev.localhost", "hello from app.py\n"),
        ("tool.dev.localhost", "ok\n"),
    ] {
        let response = send(dev.client(&[host]).get(dev.url(host, "/"))).await;
        assert_eq!(response.status(), 200, "{host}");
        assert_eq!(response.text().await.unwrap(), body, "{host}");
    }

    // The same directory again is the same artifact: no new release.
    let err = stderr(&dev.deploy(&spec, &["--timeout", "60s"]));
    assert!(err.contains("api: release 1 unchanged"), "{err}");
    // A changed file is a new release, serving the new code.
    std::fs::write(app.join("greeting.txt"), "hello again\n").unwrap();
    let err = stderr(&dev.deploy(&spec, &["--timeout", "60s"]));
    assert!(err.contains("api: release 2 created"), "{err}");
    let host = "api.dev.localhost";
    let body = text_of(dev.client(&[host]).get(dev.url(host, "/"))).await;
    assert_eq!(body, "hello again\n");

    // A directory without a command is refused at deploy, saying what to do.
    let bad = write_file(
        dir.path(),
        "bad.toml",
        "[service.bad]\nartifact = \"app\"\n",
    );
    let err = dev.deploy_fails(&bad, &[], 2);
    assert!(err.contains("is a directory"), "{err}");
    assert!(err.contains("add `command"), "{err}");
}
