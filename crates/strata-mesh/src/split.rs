//! Traffic split between a progressive rollout's new release and the stable one: which of a
//! route's instances an attempt may go to. The first attempt of a request goes to the new
//! release's instances with its share of the requests (a draw from 0 to 99 under the weight)
//! and to the others otherwise; a retry prefers the others, so a request a failing canary
//! dropped is retried on the stable release. When the chosen side has no instance left to
//! try, any does: some answer beats none.

use strata_core::api::TrafficSplit;

/// The instances of `endpoints` not yet `tried` that attempt `attempt` (0: the first) may go
/// to under `split`; `draw` is uniform in `0..100`.
pub fn candidates<'a>(
    endpoints: &'a [String],
    split: Option<&TrafficSplit>,
    tried: &[String],
    attempt: u32,
    draw: u8,
) -> Vec<&'a String> {
    let untried = endpoints.iter().filter(|e| !tried.contains(e));
    let Some(split) = split else {
        return untried.collect();
    };
    let to_new = attempt == 0 && draw < split.weight;
    let is_new = |endpoint: &&String| split.endpoints.contains(endpoint);
    let chosen: Vec<&String> = untried.clone().filter(|e| is_new(e) == to_new).collect();
    if chosen.is_empty() {
        untried.collect()
    } else {
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(weight: u8) -> TrafficSplit {
        TrafficSplit {
            release: 3,
            stable: 2,
            weight,
            endpoints: vec!["c:1".into()],
        }
    }

    #[test]
    fn candidates_table() {
        let endpoints: Vec<String> = ["a:1", "b:1", "c:1"].map(String::from).to_vec();
        let none: Vec<String> = vec![];
        let tried_c = vec!["c:1".to_string()];
        let tried_ab = vec!["a:1".to_string(), "b:1".to_string()];
        // (name, split, tried, attempt, draw, expected)
        #[allow(clippy::type_complexity)]
        let cases: Vec<(&str, Option<TrafficSplit>, &Vec<String>, u32, u8, Vec<&str>)> = vec![
            (
                "no split: every instance",
                None,
                &none,
                0,
                0,
                vec!["a:1", "b:1", "c:1"],
            ),
            (
                "a draw under the weight goes to the new release",
                Some(split(5)),
                &none,
                0,
                4,
                vec!["c:1"],
            ),
            (
                "a draw at the weight goes to the stable",
                Some(split(5)),
                &none,
                0,
                5,
                vec!["a:1", "b:1"],
            ),
            (
                "weight 0: never the new release",
                Some(split(0)),
                &none,
                0,
                0,
                vec!["a:1", "b:1"],
            ),
            (
                "weight 100: always the new release",
                Some(split(100)),
                &none,
                0,
                99,
                vec!["c:1"],
            ),
            (
                "a retry goes to the stable",
                Some(split(100)),
                &tried_c,
                1,
                0,
                vec!["a:1", "b:1"],
            ),
            (
                "a retry with every stable one tried goes anywhere left",
                Some(split(5)),
                &tried_ab,
                1,
                0,
                vec!["c:1"],
            ),
            (
                "not tried twice, even if chosen",
                Some(split(50)),
                &tried_c,
                0,
                0,
                vec!["a:1", "b:1"],
            ),
        ];
        for (name, split, tried, attempt, draw, expected) in cases {
            let got: Vec<&str> = candidates(&endpoints, split.as_ref(), tried, attempt, draw)
                .into_iter()
                .map(String::as_str)
                .collect();
            assert_eq!(got, expected, "{name}");
        }
    }

    #[test]
    fn the_share_of_first_attempts_follows_the_weight() {
        let endpoints: Vec<String> = ["a:1", "b:1", "c:1"].map(String::from).to_vec();
        for weight in [5u8, 25, 50] {
            let to_new = (0..100u8)
                .filter(|draw| {
                    candidates(&endpoints, Some(&split(weight)), &[], 0, *draw) == [&endpoints[2]]
                })
                .count();
            assert_eq!(to_new, weight as usize);
        }
    }
}
