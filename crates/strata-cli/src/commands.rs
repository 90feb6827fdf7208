//! The CLI's commands that read from or change a control plane: status, logs, delete,
//! events (deploy is in `deploy_cmd`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use strata_core::api::{EventList, ServiceStatus};
use strata_core::DesiredState;

use crate::api::Api;
use crate::{CliResult, Failure};

pub async fn status(api: &Api, service: Option<&str>, env: Option<&str>, json: bool) -> CliResult {
    let services: Vec<ServiceStatus> = match (service, env) {
        (Some(service), env) => {
            let env = env.unwrap_or("dev");
            vec![
                api.get(&format!("/v1/envs/{env}/services/{service}"))
                    .await?,
            ]
        }
        (None, Some(env)) => api.get(&format!("/v1/envs/{env}/services")).await?,
        (None, None) => api.get("/v1/services").await?,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&services)?);
        return Ok(());
    }
    if services.is_empty() {
        println!("no services; deploy one with `strata deploy FILE`");
        return Ok(());
    }
    let mut out = String::new();
    out.push_str(&format!(
        "{:<20} {:<8} {:>7} {:>9} {:>10}  {}\n",
        "SERVICE", "ENV", "RELEASE", "HEALTHY", "SCALE", "URL"
    ));
    for status in &services {
        let healthy = status
            .instances
            .iter()
            .filter(|v| v.instance.release == status.service.desired_release && v.is_routable())
            .count();
        let scale = match &status.service.autoscale {
            Some(bounds) => format!("{}..{}", bounds.min, bounds.max),
            None => "fixed".to_string(),
        };
        out.push_str(&format!(
            "{:<20} {:<8} {:>7} {:>9} {:>10}  {}\n",
            status.service.name,
            status.service.env,
            status.service.desired_release,
            format!("{healthy}/{}", status.service.replicas),
            scale,
            status.hosts.first().cloned().unwrap_or_default()
        ));
    }
    let with_slo: Vec<&ServiceStatus> = services
        .iter()
        .filter(|s| s.service.slo.is_some())
        .collect();
    if !with_slo.is_empty() {
        out.push('\n');
        out.push_str(&format!(
            "{:<20} {:<8} {:>9} {:>9} {:>8} {:>12} {:>16} {:>10}\n",
            "SLO (LAST HOUR)",
            "ENV",
            "REQUESTS",
            "SUCCESS",
            "TARGET",
            "BUDGET LEFT",
            "P99 MET",
            "WORST P99"
        ));
        for status in with_slo {
            let (env, name) = (&status.service.env, &status.service.name);
            let report: Option<strata_core::api::SloReport> = api
                .get(&format!("/v1/envs/{env}/services/{name}/slo"))
                .await?;
            let Some(report) = report else { continue };
            let percent =
                |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
            let p99 = match (report.p99_target_ms, report.p99_attainment) {
                (Some(target), Some(met)) => format!("{:.1}% <={target}ms", met * 100.0),
                (Some(target), None) => format!("- <={target}ms"),
                _ => "-".to_string(),
            };
            out.push_str(&format!(
                "{:<20} {:<8} {:>9} {:>9} {:>8} {:>12} {:>16} {:>10}\n",
                name,
                env,
                report.requests,
                percent(report.success),
                percent(report.allowed_failures.map(|f| 1.0 - f)),
                percent(report.error_budget_left),
                p99,
                report
                    .worst_p99_ms
                    .map_or("-".to_string(), |ms| format!("{ms:.0} ms"))
            ));
        }
    }
    out.push('\n');
    out.push_str(&format!(
        "{:<24} {:>7} {:<10} {:<10} {:<21} {:>8}  {}\n",
        "INSTANCE", "RELEASE", "NODE", "STATE", "ADDRESS", "RESTARTS", "MESSAGE"
    ));
    for status in &services {
        for view in &status.instances {
            let s = view.status.as_ref();
            let mut state = format!("{:?}", view.state()).to_lowercase();
            if view.instance.desired == DesiredState::Stopped && !view.state().is_terminal() {
                state = format!("{state}*");
            }
            out.push_str(&format!(
                "{:<24} {:>7} {:<10} {:<10} {:<21} {:>8}  {}\n",
                view.instance.id,
                view.instance.release,
                view.instance.node,
                state,
                s.and_then(|s| s.address.clone())
                    .unwrap_or_else(|| "-".into()),
                s.map(|s| s.restarts).unwrap_or(0),
                s.map(|s| s.message.clone()).unwrap_or_default()
            ));
        }
    }
    print!("{out}");
    Ok(())
}

pub async fn logs(
    api: &Api,
    service: &str,
    env: &str,
    follow: bool,
    tail: usize,
    previous: bool,
) -> CliResult {
    let response = api
        .stream(&format!(
            "/v1/envs/{env}/services/{service}/logs?tail={tail}&follow={follow}&previous={previous}"
        ))
        .await?;
    let mut body = response.bytes_stream();
    let mut stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("log stream interrupted")?;
        stdout.write_all(&chunk)?;
        stdout.flush()?;
    }
    Ok(())
}

/// `strata scale SERVICE [N] [--min M --max X]`.
pub async fn scale(
    api: &Api,
    service: &str,
    env: &str,
    request: strata_core::api::ScaleRequest,
) -> CliResult {
    if request.replicas.is_none() && request.min.is_none() && request.max.is_none() {
        return Err(Failure::BadInput(anyhow::anyhow!(
            "error: say what to change: strata scale {service} N, or --min M --max X"
        )));
    }
    let scaled: strata_core::Service = api
        .put(
            &format!("/v1/envs/{env}/services/{service}/scale"),
            &request,
        )
        .await?;
    match scaled.autoscale {
        Some(bounds) => println!(
            "{service}: {} instance(s), autoscaled {}..{}",
            scaled.replicas, bounds.min, bounds.max
        ),
        None => println!("{service}: {} instance(s)", scaled.replicas),
    }
    Ok(())
}

pub async fn delete(api: &Api, service: &str, env: &str) -> CliResult {
    api.delete(&format!("/v1/envs/{env}/services/{service}"))
        .await?;
    eprintln!("{service} ({env}): deleted; its instances are stopping");
    Ok(())
}

pub async fn events(
    api: &Api,
    service: Option<&str>,
    limit: usize,
    json: bool,
    follow: bool,
) -> CliResult {
    let filter = service.map(|s| format!("service={s}")).unwrap_or_default();
    // Following: the stream is open before the list is read, so nothing falls between.
    let stream = match follow {
        true => Some(api.stream(&format!("/v1/events/follow?{filter}")).await?),
        false => None,
    };
    let events: EventList = api
        .get(&format!("/v1/events?limit={limit}&{filter}"))
        .await?;
    let Some(stream) = stream else {
        if json {
            println!("{}", serde_json::to_string_pretty(&events.events)?);
        } else {
            events.events.iter().for_each(print_event);
        }
        return Ok(());
    };
    let show = |event: &strata_core::Event| {
        if json {
            // One JSON object a line while following.
            println!("{}", serde_json::to_string(event).unwrap_or_default());
        } else {
            print_event(event);
        }
        let _ = std::io::stdout().flush();
    };
    let mut last = 0;
    for event in &events.events {
        show(event);
        last = last.max(event.seq);
    }
    let mut body = stream.bytes_stream();
    let mut buffer = String::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("event stream interrupted")?;
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let message: String = buffer.drain(..end + 2).collect();
            for data in message.lines().filter_map(|l| l.strip_prefix("data:")) {
                if let Ok(event) = serde_json::from_str::<strata_core::Event>(data.trim()) {
                    if event.seq > last {
                        last = event.seq;
                        show(&event);
                    }
                }
            }
        }
    }
    Err(Failure::Failed(anyhow::anyhow!(
        "the control plane closed the event stream"
    )))
}

fn print_event(event: &strata_core::Event) {
    let at = std::time::UNIX_EPOCH + Duration::from_millis(event.at);
    println!(
        "{}  {:<18} {:<16} {}",
        humantime::format_rfc3339_millis(at),
        event.kind,
        event.actor,
        event.message
    );
}
