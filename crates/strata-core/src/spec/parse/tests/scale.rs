//! `[scale]` and `[slo]`: fixed counts, autoscaling bounds, objectives.

use super::*;

#[test]
fn autoscale() {
    let scale = |body: &str| only_service(&service(body)).scale;
    let auto = |min, max, target_concurrency, scale_to_zero_after_ms| {
        Some(AutoscaleSpec {
            min,
            max,
            target_concurrency,
            scale_to_zero_after_ms,
        })
    };

    // `replicas` alone: a fixed count, as before.
    assert_eq!(
        scale("[service.hello.scale]\nreplicas = 3\n"),
        ScaleSpec::fixed(3)
    );

    // min and max only: start at min, the other keys take their defaults.
    assert_eq!(
        scale("[service.hello.scale]\nmin = 2\nmax = 5\n"),
        ScaleSpec {
            replicas: 2,
            autoscale: auto(2, 5, 10, 60_000),
        }
    );
    assert_eq!(
        (
            AutoscaleSpec::DEFAULT_TARGET_CONCURRENCY,
            AutoscaleSpec::DEFAULT_SCALE_TO_ZERO_AFTER_MS
        ),
        (10, 60_000)
    );

    // replicas inside [min, max] is the starting count; bounds included.
    assert_eq!(
        scale("[service.hello.scale]\nreplicas = 3\nmin = 1\nmax = 8\ntarget_concurrency = 50\n"),
        ScaleSpec {
            replicas: 3,
            autoscale: auto(1, 8, 50, 60_000),
        }
    );
    assert_eq!(
        scale("scale = { replicas = 1, min = 1, max = 8 }\n").replicas,
        1
    );
    assert_eq!(
        scale("scale = { replicas = 8, min = 1, max = 8 }\n").replicas,
        8
    );
    assert_eq!(
        scale("scale = { min = 1, max = 1 }\n"),
        ScaleSpec {
            replicas: 1,
            autoscale: auto(1, 1, 10, 60_000),
        }
    );
    assert_eq!(
        scale("scale.min = 0\nscale.max = 1000\nscale.target_concurrency = 10000\n").autoscale,
        auto(0, 1000, 10_000, 60_000)
    );

    // min = 0: scale to zero, after the default or the time given.
    assert_eq!(
        scale("[service.hello.scale]\nmin = 0\nmax = 4\n"),
        ScaleSpec {
            replicas: 0,
            autoscale: auto(0, 4, 10, 60_000),
        }
    );
    assert_eq!(
        scale("[service.hello.scale]\nmin = 0\nmax = 4\nscale_to_zero_after = \"30s\"\n"),
        ScaleSpec {
            replicas: 0,
            autoscale: auto(0, 4, 10, 30_000),
        }
    );
    let zero_after = |v: &str| {
        scale(&format!(
            "scale = {{ min = 0, max = 2, scale_to_zero_after = {v} }}\n"
        ))
        .autoscale
        .unwrap()
        .scale_to_zero_after_ms
    };
    assert_eq!(zero_after("\"5m\""), 300_000);
    assert_eq!(zero_after("\"1s\""), 1_000);
    assert_eq!(zero_after("\"24h\""), 86_400_000);
    assert_eq!(zero_after("\"1m 30s\""), 90_000);
    assert_eq!(
        scale("scale = { replicas = 2, min = 0, max = 2, scale_to_zero_after = \"10m\" }\n"),
        ScaleSpec {
            replicas: 2,
            autoscale: auto(0, 2, 10, 600_000),
        }
    );

    // Absent autoscaling is omitted from the JSON; present, it round-trips.
    let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
    let fixed = only_service(&service("scale.replicas = 2\n"));
    assert_eq!(json(&fixed)["scale"], serde_json::json!({ "replicas": 2 }));
    let auto_spec = only_service(&service("scale = { min = 1, max = 3 }\n"));
    assert_eq!(
        json(&auto_spec)["scale"],
        serde_json::json!({
            "replicas": 1,
            "autoscale": {
                "min": 1,
                "max": 3,
                "target_concurrency": 10,
                "scale_to_zero_after_ms": 60_000
            }
        })
    );
    let back: ServiceSpec = serde_json::from_value(json(&auto_spec)).unwrap();
    assert_eq!(back, auto_spec);
}

#[test]
fn autoscale_errors() {
    // (body under [service.hello], line, column, key, message, hint)
    let cases: &[(&str, usize, usize, &str, &str, &str)] = &[
        (
            "[service.hello.scale]\nmin = 2\n",
            4,
            1,
            "service.hello.scale.max",
            "`service.hello.scale` sets `min` without `max`: autoscaling needs both",
            "add `max`: write both bounds, like `min = 2` and `max = 10`",
        ),
        (
            "[service.hello.scale]\nreplicas = 2\nmax = 4\n",
            5,
            1,
            "service.hello.scale.min",
            "`service.hello.scale` sets `max` without `min`: autoscaling needs both",
            "add `min`: write both bounds, like `min = 1` and `max = 4`",
        ),
        (
            "[service.hello.scale]\nmin = 5\nmax = 3\n",
            4,
            7,
            "service.hello.scale.min",
            "`service.hello.scale`: min (5) is above max (3)",
            "min is the fewest instances and max the most: write `min = 3` and `max = 5`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 0\n",
            5,
            7,
            "service.hello.scale.max",
            "`service.hello.scale.max` must be between 1 and 1000, found 0",
            "max is the most instances the autoscaler runs, from 1 to 1000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 1001\n",
            5,
            7,
            "service.hello.scale.max",
            "`service.hello.scale.max` must be between 1 and 1000, found 1001",
            "max is the most instances the autoscaler runs, from 1 to 1000",
        ),
        (
            "[service.hello.scale]\nmin = -1\nmax = 3\n",
            4,
            7,
            "service.hello.scale.min",
            "`service.hello.scale.min` must be between 0 and 1000, found -1",
            "min is the fewest instances the autoscaler keeps running, from 0 to 1000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = 0\n",
            6,
            22,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` must be between 1 and 10000, found 0",
            "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = 20000\n",
            6,
            22,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` must be between 1 and 10000, found 20000",
            "target_concurrency is how many requests in flight per instance the autoscaler aims at, from 1 to 10000",
        ),
        (
            "[service.hello.scale]\nmin = 1\nmax = 3\ntarget_concurrency = \"10\"\n",
            6,
            22,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` must be an integer, found a string",
            "write the number without quotes: `target_concurrency = 10`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"500ms\"\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` must be between 1s and 24h, found \"500ms\"",
            "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"25h\"\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` must be between 1s and 24h, found \"25h\"",
            "it is how long without requests before the last instance stops; for example `scale_to_zero_after = \"5m\"`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = 30\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` must be a duration string, found an integer",
            "durations are strings with a unit: `scale_to_zero_after = \"30s\"` or `\"30ms\"`",
        ),
        (
            "[service.hello.scale]\nmin = 0\nmax = 2\nscale_to_zero_after = \"soon\"\n",
            6,
            23,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` is not a duration: \"soon\"",
            "write a number and a unit, like \"500ms\", \"5m\" or \"1m 30s\"",
        ),
        (
            "[service.hello.scale]\nmin = 2\nmax = 4\nscale_to_zero_after = \"5m\"\n",
            6,
            1,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` is only allowed with `min = 0`, and min is 2",
            "the last instance stops after a time without requests only when `min = 0`: set `min = 0`, or remove `scale_to_zero_after` to keep at least 2 running",
        ),
        (
            "[service.hello.scale]\nreplicas = 2\ntarget_concurrency = 5\n",
            5,
            1,
            "service.hello.scale.target_concurrency",
            "`service.hello.scale.target_concurrency` is set without `min` and `max`: autoscaling needs min and max",
            "to autoscale, add `min = 1` and `max = 10` to [service.hello.scale]; for a fixed count of instances, remove `target_concurrency` and set `replicas`",
        ),
        (
            "scale = { scale_to_zero_after = \"5m\" }\n",
            3,
            11,
            "service.hello.scale.scale_to_zero_after",
            "`service.hello.scale.scale_to_zero_after` is set without `min` and `max`: autoscaling needs min and max",
            "to autoscale, add `min = 0` and `max = 10` to [service.hello.scale]; for a fixed count of instances, remove `scale_to_zero_after` and set `replicas`",
        ),
        (
            "[service.hello.scale]\nreplicas = 12\nmin = 2\nmax = 10\n",
            4,
            12,
            "service.hello.scale.replicas",
            "`service.hello.scale.replicas` must be between min (2) and max (10) when autoscaling, found 12",
            "with `min` and `max`, replicas is how many instances to start with: write a number from 2 to 10, or remove `replicas` to start at min",
        ),
        (
            "[service.hello.scale]\nreplicas = 0\nmin = 1\nmax = 3\n",
            4,
            12,
            "service.hello.scale.replicas",
            "`service.hello.scale.replicas` must be between min (1) and max (3) when autoscaling, found 0",
            "with `min` and `max`, replicas is how many instances to start with: write a number from 1 to 3, or remove `replicas` to start at min",
        ),
    ];
    for &(body, line, column, key, message, hint) in cases {
        assert_service_error(body, (line, column, key, message, hint));
    }

    // Unknown keys: did you mean, and keys written in the wrong table.
    let hint = |body: &str| error(&service(body)).hint.unwrap();
    // A misspelt bound is that one error, not also a missing bound.
    let e = error(&service("[service.hello.scale]\nmin = 1\nmaxx = 3\n"));
    assert_eq!(
        summary(&e),
        (
            5,
            1,
            Some("service.hello.scale.maxx"),
            "unknown key `service.hello.scale.maxx`",
            Some("did you mean `max`?")
        )
    );
    assert_eq!(
        hint("[service.hello.scale]\nmin_replicas = 1\nmax = 4\n"),
        "did you mean `min`?"
    );
    let hints: Vec<String> = errors(&service(
        "[service.hello.scale]\nmin_replicas = 1\nmax_replicas = 4\ntarget_concurrency = 5\n",
    ))
    .into_iter()
    .filter_map(|e| e.hint)
    .collect();
    assert_eq!(hints, ["did you mean `min`?", "did you mean `max`?"]);
    assert_eq!(
        hint("[service.hello.scale]\nmax_replicas = 1\n"),
        "did you mean `max`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\nconcurrency = 1\n"),
        "did you mean `target_concurrency`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\ntarget_concurency = 1\n"),
        "did you mean `target_concurrency`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\nidle_timeout = \"1m\"\n"),
        "did you mean `scale_to_zero_after`?"
    );
    assert_eq!(
        hint("[service.hello.scale]\nxyzzy = 1\n"),
        "[service.hello.scale] accepts `replicas`, `min`, `max`, `target_concurrency` and `scale_to_zero_after`"
    );
    assert_eq!(
        hint("min = 1\n"),
        "`min` belongs in [service.hello.scale]: write `scale.min = 1` here, or put it under [service.hello.scale]"
    );
    assert_eq!(
        hint("autoscale = true\n"),
        "autoscaling is set in [service.hello.scale]: write `min` and `max` there, like `scale = { min = 1, max = 10 }`"
    );

    // Every bad value is reported, in order.
    let source = service(
        "[service.hello.scale]\nreplicas = \"x\"\nmin = -1\nmax = 0\ntarget_concurrency = 0\nscale_to_zero_after = 5\n",
    );
    let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(4, 12), (5, 7), (6, 7), (7, 22), (8, 23)]);
}

#[test]
fn slo() {
    let slo = |body: &str| only_service(&service(body)).slo;
    assert_eq!(
        slo("[service.hello.slo]\np99_ms = 300\nerror_rate = 0.01\navailability = 0.999\n"),
        Some(SloSpec {
            p99_ms: Some(300),
            error_rate: Some(Ratio::from_ppm(10_000)),
            availability: Some(Ratio::from_ppm(999_000)),
        })
    );
    // Any one objective is enough; the others stay unset.
    assert_eq!(
        slo("[service.hello.slo]\navailability = 0.9995\n"),
        Some(SloSpec {
            availability: Some(Ratio::from_ppm(999_500)),
            ..SloSpec::default()
        })
    );
    assert_eq!(
        slo("slo = { p99_ms = 1 }\n"),
        Some(SloSpec {
            p99_ms: Some(1),
            ..SloSpec::default()
        })
    );
    assert_eq!(slo("slo.p99_ms = 600000\n").unwrap().p99_ms, Some(600_000));
    assert_eq!(
        slo("slo.error_rate = 0.000001\n").unwrap().error_rate,
        Some(Ratio::from_ppm(1))
    );
    assert_eq!(
        slo("slo.availability = 0.999999\n").unwrap().availability,
        Some(Ratio::from_ppm(999_999))
    );
    assert_eq!(slo(""), None);

    // Ratio: exact in millionths, a float in JSON, a percentage when displayed.
    let r = Ratio::from_ppm(999_000);
    assert_eq!((r.ppm(), r.as_f64()), (999_000, 0.999));
    assert_eq!(Ratio::from_ppm(2_000_000), Ratio::ONE);
    assert_eq!(Ratio::from_f64(0.01), Some(Ratio::from_ppm(10_000)));
    assert_eq!(Ratio::from_f64(1.5), None);
    assert_eq!(Ratio::from_f64(f64::NAN), None);
    assert!(Ratio::from_ppm(1) < Ratio::from_ppm(2));
    let shown: Vec<String> = [999_000, 10_000, 500, 1, 0, 1_000_000, 999_999]
        .iter()
        .map(|&ppm| Ratio::from_ppm(ppm).to_string())
        .collect();
    assert_eq!(
        shown,
        ["99.9%", "1%", "0.05%", "0.0001%", "0%", "100%", "99.9999%"]
    );
    assert_eq!(serde_json::to_string(&r).unwrap(), "0.999");
    assert_eq!(serde_json::from_str::<Ratio>("0.999").unwrap(), r);
    assert_eq!(serde_json::from_str::<Ratio>("1").unwrap(), Ratio::ONE);
    assert!(serde_json::from_str::<Ratio>("1.5").is_err());
    assert!(serde_json::from_str::<Ratio>("-0.1").is_err());
    assert!(serde_json::from_str::<Ratio>("\"0.5\"").is_err());

    // In the service's JSON: floats; absent objectives and an absent SLO are omitted.
    let json = |s: &ServiceSpec| serde_json::to_value(s).unwrap();
    let with = only_service(&service(
        "[service.hello.slo]\np99_ms = 300\nerror_rate = 0.01\navailability = 0.999\n",
    ));
    assert_eq!(
        json(&with)["slo"],
        serde_json::json!({ "p99_ms": 300, "error_rate": 0.01, "availability": 0.999 })
    );
    let back: ServiceSpec = serde_json::from_value(json(&with)).unwrap();
    assert_eq!(back, with);
    let partial = only_service(&service("slo.availability = 0.99\n"));
    assert_eq!(
        json(&partial)["slo"],
        serde_json::json!({ "availability": 0.99 })
    );
    let without = only_service(&service(""));
    assert!(json(&without).get("slo").is_none());
}

#[test]
fn slo_errors() {
    const SET_ONE: &str = "set at least one of `p99_ms` (milliseconds), `error_rate` and `availability` (fractions between 0 and 1), like `availability = 0.999`, or remove the table";
    const ERROR_RATE: &str = "error_rate is the largest fraction of requests that may fail, between 0 and 1 (exclusive): for example `error_rate = 0.01` (1%)";
    const AVAILABILITY: &str = "availability is the fraction of time the service must be up, between 0 and 1 (exclusive): for example `availability = 0.999` (99.9%)";
    const P99: &str = "p99_ms is the latency 99% of requests stay under, in milliseconds, from 1 to 600000 (10 minutes)";
    // (body under [service.hello], line, column, key, message, hint)
    let cases: &[(&str, usize, usize, &str, &str, &str)] = &[
        (
            "[service.hello.slo]\n",
            3,
            16,
            "service.hello.slo",
            "`service.hello.slo` sets no objective",
            SET_ONE,
        ),
        (
            "slo = {}\n",
            3,
            1,
            "service.hello.slo",
            "`service.hello.slo` sets no objective",
            SET_ONE,
        ),
        (
            "slo = 0.999\n",
            3,
            7,
            "service.hello.slo",
            "`service.hello.slo` must be a table, found a float",
            "write it as a table: `slo = { availability = 0.999 }`",
        ),
        (
            "[service.hello.slo]\np99_ms = 0\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be between 1 and 600000, found 0",
            P99,
        ),
        (
            "[service.hello.slo]\np99_ms = 600001\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be between 1 and 600000, found 600001",
            P99,
        ),
        (
            "[service.hello.slo]\np99_ms = \"300ms\"\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be an integer, found a string",
            "p99_ms is a number of milliseconds: write `p99_ms = 300`",
        ),
        (
            "[service.hello.slo]\np99_ms = 2.5\n",
            4,
            10,
            "service.hello.slo.p99_ms",
            "`service.hello.slo.p99_ms` must be an integer, found a float",
            "for example `p99_ms = 300`",
        ),
        (
            "[service.hello.slo]\nerror_rate = 1\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be a float between 0 and 1, found an integer",
            ERROR_RATE,
        ),
        (
            "[service.hello.slo]\nerror_rate = 5\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be a float between 0 and 1, found an integer",
            "write a fraction with a decimal point: for 5% write `error_rate = 0.05`",
        ),
        (
            "[service.hello.slo]\nerror_rate = 0.0\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be between 0 and 1 (exclusive), found 0.0",
            ERROR_RATE,
        ),
        (
            "[service.hello.slo]\nerror_rate = 1.5\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be between 0 and 1 (exclusive), found 1.5",
            "it is a fraction, not a percentage: for 1.5% write `error_rate = 0.015`",
        ),
        (
            "[service.hello.slo]\nerror_rate = 1e-9\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` is counted in millionths, and 1e-9 rounds to 0",
            "write at least 0.000001; for example `error_rate = 0.01`",
        ),
        (
            "[service.hello.slo]\nerror_rate = \"1%\"\n",
            4,
            14,
            "service.hello.slo.error_rate",
            "`service.hello.slo.error_rate` must be a float between 0 and 1, found a string",
            "write a fraction: `error_rate = 0.01`",
        ),
        (
            "[service.hello.slo]\navailability = 99.9\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be between 0 and 1 (exclusive), found 99.9",
            "it is a fraction, not a percentage: for 99.9% write `availability = 0.999`",
        ),
        (
            "[service.hello.slo]\navailability = 1.0\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be between 0 and 1 (exclusive), found 1.0",
            AVAILABILITY,
        ),
        (
            "[service.hello.slo]\navailability = 1\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be a float between 0 and 1, found an integer",
            AVAILABILITY,
        ),
        (
            "[service.hello.slo]\navailability = \"99.9%\"\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be a float between 0 and 1, found a string",
            "write a fraction: `availability = 0.999`",
        ),
        (
            "[service.hello.slo]\navailability = \"0.99\"\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` must be a float between 0 and 1, found a string",
            "write the number without quotes: `availability = 0.99`",
        ),
        (
            "[service.hello.slo]\navailability = 0.9999999\n",
            4,
            16,
            "service.hello.slo.availability",
            "`service.hello.slo.availability` is counted in millionths, and 0.9999999 rounds to 1",
            "write at most 0.999999; for example `availability = 0.999`",
        ),
    ];
    for &(body, line, column, key, message, hint) in cases {
        assert_service_error(body, (line, column, key, message, hint));
    }

    // Unknown keys: did you mean, and keys written in the wrong table. A table holding only
    // an unknown key is that one error.
    let hint = |body: &str| error(&service(body)).hint.unwrap();
    let e = error(&service("[service.hello.slo]\np99 = 300\n"));
    assert_eq!(
        summary(&e),
        (
            4,
            1,
            Some("service.hello.slo.p99"),
            "unknown key `service.hello.slo.p99`",
            Some("did you mean `p99_ms`?")
        )
    );
    assert_eq!(
        hint("[service.hello.slo]\nerror-rate = 0.01\n"),
        "did you mean `error_rate`?"
    );
    assert_eq!(
        hint("[service.hello.slo]\nlatency = 300\n"),
        "did you mean `p99_ms`?"
    );
    assert_eq!(
        hint("[service.hello.slo]\nuptime = 0.99\n"),
        "did you mean `availability`?"
    );
    assert_eq!(
        hint("[service.hello.slo]\nxyzzy = 1\n"),
        "[service.hello.slo] accepts `p99_ms`, `error_rate` and `availability`"
    );
    assert_eq!(
        hint("[service.hello.slo]\nreplicas = 1\n"),
        "`replicas` belongs in [service.hello.scale]"
    );
    assert_eq!(
        hint("availability = 0.99\n"),
        "`availability` belongs in [service.hello.slo]: write `slo.availability = 0.99` here, or put it under [service.hello.slo]"
    );
    assert_eq!(hint("sla.availability = 0.99\n"), "did you mean `slo`?");

    // Every bad value is reported, in order.
    let source =
        service("[service.hello.slo]\np99_ms = -1\nerror_rate = 2\navailability = \"high\"\n");
    let got: Vec<(usize, usize)> = errors(&source).iter().map(|e| (e.line, e.column)).collect();
    assert_eq!(got, vec![(4, 10), (5, 14), (6, 16)]);
}

#[test]
fn scale_and_slo_leave_the_spec_hash_unchanged() {
    let base = only_service(&service(""));
    let hash = base.spec_hash(Some("sha256:aa"));
    for body in [
        "scale.replicas = 7\n",
        "scale = { min = 1, max = 5 }\n",
        "scale = { replicas = 3, min = 0, max = 9, target_concurrency = 50, scale_to_zero_after = \"2m\" }\n",
        "slo.availability = 0.999\n",
        "slo = { p99_ms = 200, error_rate = 0.01 }\n",
        "scale = { min = 2, max = 4 }\nslo.p99_ms = 100\n",
    ] {
        let spec = only_service(&service(body));
        assert_ne!(spec, base, "{body:?}");
        assert_eq!(spec.spec_hash(Some("sha256:aa")), hash, "{body:?}");
    }
    // The hash of a spec without autoscaling or SLO is what it was before they existed:
    // neither appears in its JSON.
    let json = serde_json::to_value(&base).unwrap();
    assert!(json.get("slo").is_none() && json["scale"].get("autoscale").is_none());
    // What runs still changes it: the artifact, its digest, an SLO beside another change.
    let other = only_service("[service.hello]\nartifact = \"build/other\"\n");
    assert_ne!(other.spec_hash(Some("sha256:aa")), hash);
    assert_ne!(base.spec_hash(Some("sha256:bb")), hash);
    let both = only_service(&service("slo.availability = 0.9\nargs = [\"-v\"]\n"));
    assert_ne!(both.spec_hash(Some("sha256:aa")), hash);
}
