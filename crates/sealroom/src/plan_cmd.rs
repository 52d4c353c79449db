//! `sealroom plan`: choose the sharing mode, threshold and `min_clients` of a
//! federation from how often helpers are up and clients drop out
//! ([`crate::plan`] does the arithmetic; this parses and prints).

use anyhow::Result;
use clap::Args;
use sealroom_core::additive::MAX_HELPERS;
use sealroom_protocol::descriptor::{MAX_CLIENTS, MIN_MIN_CLIENTS};
use serde::Serialize;

use crate::plan::{Choice, Inputs, Plan, Sharing, plan};
use crate::table::{Align, Table};

/// Options of `sealroom plan`.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = "\
Model: each helper is up independently with probability a; each invited client
uploads independently with probability 1 − d. A round releases when at least t
helpers answer and at least k clients uploaded:
  P(reconstruct) = P(Bin(h, a) ≥ t) · P(Bin(n, 1 − d) ≥ k).
Both binomial tails are summed exactly; P(fail) is summed directly, not taken
as 1 − P, so it stays accurate far below 1e-16.

Settings (those a federation accepts):
  additive    every helper must answer (t = h); the cheaper mode
  threshold   Shamir t-of-h, any t helpers reconstruct; t must be a majority
              (a smaller t is refused: two disjoint groups of t helpers could
              answer two different inclusion sets). t = h behaves as additive.
  k           min_clients, from 2 (a sum over one client is its input) to n

Privacy: t colluding helpers reconstruct any client's input; k − 1 colluding
clients who see the released sum over k learn the remaining client's input.
The columns give these coalition sizes: larger is safer.

Rows: for each setting, k = 2, ⌈n/10⌉, ⌈n/2⌉ (for reference, when they are at
least 2) and the largest k that still meets the target.

Recommendation: among settings meeting the target, the largest t, then the
largest k, then the higher P(reconstruct); additive over threshold h-of-h.
If none meets it, the plan says so (exit code 0) and names the setting most
likely to release.

Examples:
  sealroom plan --helpers 5 --clients 200 --client-dropout 0.1 --helper-availability 0.99
  sealroom plan --helpers 3 --clients 1000 --client-dropout 0.3 --helper-availability 0.999 --target 0.9999 --json")]
pub struct PlanArgs {
    /// Helpers h: independent organisations that each hold one share of
    /// every input (2..=16).
    #[arg(long, value_name = "H", value_parser = parse_helpers)]
    pub helpers: usize,
    /// Clients n invited to each round (2..=100000).
    #[arg(long, value_name = "N", value_parser = parse_clients)]
    pub clients: usize,
    /// Probability d that an invited client does not upload in a round
    /// (0..=1), independently of the others.
    #[arg(long, value_name = "D", value_parser = parse_probability)]
    pub client_dropout: f64,
    /// Probability a that a helper is up and answers in a round (0..=1),
    /// independently of the others.
    #[arg(long, value_name = "A", value_parser = parse_probability)]
    pub helper_availability: f64,
    /// The smallest acceptable probability that a round releases, strictly
    /// between 0 and 1.
    #[arg(long, value_name = "P", default_value_t = 0.999, value_parser = parse_target)]
    pub target: f64,
    /// Print every row and the recommendation as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs `sealroom plan`.
pub fn run(args: &PlanArgs) -> Result<()> {
    let inputs = Inputs {
        helpers: args.helpers,
        clients: args.clients,
        client_dropout: args.client_dropout,
        helper_availability: args.helper_availability,
        target: args.target,
    };
    let plan = plan(&inputs);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&JsonPlan::new(&inputs, &plan))?
        );
    } else {
        print!("{}", render(&inputs, &plan));
    }
    Ok(())
}

/// The plan as a table, a legend and the recommendation.
fn render(inputs: &Inputs, plan: &Plan) -> String {
    let decimals = decimals_for(inputs.target);
    let mut table = Table::new([
        ("mode", Align::Left),
        ("t", Align::Right),
        ("k", Align::Right),
        ("k is", Align::Left),
        ("P(reconstruct)", Align::Right),
        ("P(fail)", Align::Right),
        ("colluding helpers", Align::Right),
        ("colluding clients", Align::Right),
        ("meets target", Align::Left),
    ]);
    for row in &plan.rows {
        let c = &row.choice;
        let labels: Vec<&str> = row.references.iter().map(|r| r.label()).collect();
        table.row([
            mode_name(c),
            c.threshold.to_string(),
            c.min_clients.to_string(),
            labels.join(", "),
            fixed(c.release.value(), decimals, inputs.target),
            scientific(c.release.log10_complement()),
            c.colluding_helpers().to_string(),
            c.colluding_clients().to_string(),
            if c.meets(inputs.target) { "yes" } else { "no" }.to_string(),
        ]);
    }
    let mut out = format!(
        "{} helpers up with probability {}, {} clients each dropping out with probability {}; target P(reconstruct) ≥ {}\n\n",
        inputs.helpers,
        inputs.helper_availability,
        inputs.clients,
        inputs.client_dropout,
        inputs.target
    );
    out.push_str(&table.render());
    out.push_str(
        "\ncolluding helpers/clients: the smallest coalition that learns one client's input\n\
         (t helpers pool their shares; k − 1 clients subtract theirs from the released sum).\n\
         P(reconstruct) never rounds up to the target or to 1; P(fail) = 1 − P(reconstruct), computed directly.\n\n",
    );
    out.push_str(&recommendation_text(inputs, plan, decimals));
    out.push('\n');
    out
}

/// The `recommended: …` or `target unreachable: …` line.
fn recommendation_text(inputs: &Inputs, plan: &Plan, decimals: usize) -> String {
    let chance = |c: &Choice| {
        format!(
            "P(reconstruct) = {}, P(fail) = {}",
            fixed(c.release.value(), decimals, inputs.target),
            scientific(c.release.log10_complement())
        )
    };
    let Some(best) = plan.recommendation else {
        let b = &plan.best_achievable;
        return format!(
            "target unreachable: best achievable is {}, min_clients {} ({}), below the target {}\n  \
             - more available helpers, fewer dropouts or a lower target would help",
            setting_name(b, inputs.helpers),
            b.min_clients,
            chance(b),
            inputs.target
        );
    };
    let mut reasons = vec![format!(
        "privacy breaks only if {} helpers collude, or {} clients collude with the released sum",
        best.colluding_helpers(),
        best.colluding_clients()
    )];
    let stronger = plan
        .helper_chances
        .iter()
        .find(|(s, _)| *s == Sharing::Threshold(best.threshold + 1));
    if let Some((_, up)) = stronger {
        reasons.push(format!(
            "no larger threshold meets {} with any min_clients ({} of {} helpers are up \
             together with probability {})",
            inputs.target,
            best.threshold + 1,
            inputs.helpers,
            fixed(up.value(), decimals, inputs.target)
        ));
    }
    if best.sharing == Sharing::Additive {
        reasons.push(format!(
            "threshold {h}-of-{h} is equivalent; additive is cheaper",
            h = inputs.helpers
        ));
    }
    reasons.push(if best.min_clients == inputs.clients {
        "it waits for every invited client".to_string()
    } else {
        format!(
            "min_clients {} would fall below the target",
            best.min_clients + 1
        )
    });
    format!(
        "recommended: {}, min_clients {} ({})\n  - {}",
        setting_name(&best, inputs.helpers),
        best.min_clients,
        chance(&best),
        reasons.join("\n  - ")
    )
}

/// `additive 5-of-5` or `threshold 3-of-5`.
fn setting_name(c: &Choice, helpers: usize) -> String {
    format!("{} {}-of-{helpers}", mode_name(c), c.threshold)
}

fn mode_name(c: &Choice) -> String {
    match c.sharing {
        Sharing::Additive => "additive",
        Sharing::Threshold(_) => "threshold",
    }
    .to_string()
}

/// Decimals that resolve the target: at least 6, three more than its nines.
fn decimals_for(target: f64) -> usize {
    // The slack absorbs the rounding of `1 − target` (0.9999999 has 7 nines).
    let nines = (-(1.0 - target).log10() - 1e-6).ceil();
    (nines as usize + 3).clamp(6, 15)
}

/// `x` to `decimals`, rounded to nearest unless that would carry a value
/// below the target (or below 1) up to it: then rounded down, so the table
/// never shows a miss as a hit.
fn fixed(x: f64, decimals: usize, target: f64) -> String {
    let nearest = format!("{x:.decimals$}");
    let shown: f64 = nearest.parse().unwrap_or(x);
    if (x < target && shown >= target) || (x < 1.0 && shown >= 1.0) {
        let scale = 10f64.powi(decimals as i32);
        format!("{:.decimals$}", (x * scale).floor() / scale)
    } else {
        nearest
    }
}

/// A probability given by its `log10`, as `1.23e-34` (`0` for −∞); fine far
/// below the smallest `f64`.
fn scientific(log10: f64) -> String {
    if log10 == f64::NEG_INFINITY {
        return "0".to_string();
    }
    let mut exponent = log10.floor();
    let mut mantissa = 10f64.powf(log10 - exponent);
    if format!("{mantissa:.2}") == "10.00" {
        mantissa = 1.0;
        exponent += 1.0;
    }
    format!("{mantissa:.2}e{}", exponent as i64)
}

/// The JSON form of a plan.
#[derive(Serialize, Debug)]
struct JsonPlan {
    helpers: usize,
    clients: usize,
    client_dropout: f64,
    helper_availability: f64,
    target: f64,
    rows: Vec<JsonChoice>,
    recommendation: Option<JsonChoice>,
    best_achievable: JsonChoice,
}

#[derive(Serialize, Debug)]
struct JsonChoice {
    mode: String,
    threshold: usize,
    min_clients: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    k_is: Vec<&'static str>,
    p_reconstruct: f64,
    p_fail: f64,
    /// `null` when `p_fail` is exactly 0.
    log10_p_fail: Option<f64>,
    colluding_helpers: usize,
    colluding_clients: usize,
    meets_target: bool,
}

impl JsonPlan {
    fn new(inputs: &Inputs, plan: &Plan) -> JsonPlan {
        let choice = |c: &Choice, k_is: Vec<&'static str>| {
            let log10 = c.release.log10_complement();
            JsonChoice {
                mode: mode_name(c),
                threshold: c.threshold,
                min_clients: c.min_clients,
                k_is,
                p_reconstruct: c.release.value(),
                p_fail: c.release.complement(),
                log10_p_fail: log10.is_finite().then_some(log10),
                colluding_helpers: c.colluding_helpers(),
                colluding_clients: c.colluding_clients(),
                meets_target: c.meets(inputs.target),
            }
        };
        JsonPlan {
            helpers: inputs.helpers,
            clients: inputs.clients,
            client_dropout: inputs.client_dropout,
            helper_availability: inputs.helper_availability,
            target: inputs.target,
            rows: plan
                .rows
                .iter()
                .map(|r| choice(&r.choice, r.references.iter().map(|x| x.label()).collect()))
                .collect(),
            recommendation: plan.recommendation.map(|c| choice(&c, Vec::new())),
            best_achievable: choice(&plan.best_achievable, Vec::new()),
        }
    }
}

fn parse_helpers(text: &str) -> Result<usize, String> {
    let helpers: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(2..=MAX_HELPERS).contains(&helpers) {
        return Err(format!(
            "a federation has 2..={MAX_HELPERS} helpers (one helper would hold every input in the clear)"
        ));
    }
    Ok(helpers)
}

fn parse_clients(text: &str) -> Result<usize, String> {
    let clients: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(MIN_MIN_CLIENTS..=MAX_CLIENTS).contains(&clients) {
        return Err(format!(
            "a round invites {MIN_MIN_CLIENTS}..={MAX_CLIENTS} clients (a sum over one client is its input)"
        ));
    }
    Ok(clients)
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let p: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err("a probability lies in 0..=1".into());
    }
    Ok(p)
}

fn parse_target(text: &str) -> Result<f64, String> {
    let p: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if !(p > 0.0 && p < 1.0) {
        return Err("the target lies strictly between 0 and 1".into());
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_refuse_what_a_federation_refuses() {
        assert!(parse_helpers("1").unwrap_err().contains("2..=16"));
        assert!(parse_helpers("17").is_err());
        assert_eq!(parse_helpers("5"), Ok(5));
        assert!(parse_clients("1").is_err());
        assert!(parse_clients("100001").is_err());
        assert_eq!(parse_clients("100000"), Ok(100_000));
        for bad in ["-0.1", "1.5", "NaN", "x"] {
            assert!(parse_probability(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_probability("0"), Ok(0.0));
        assert_eq!(parse_probability("1"), Ok(1.0));
        for bad in ["0", "1", "NaN", "2"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_print_without_overstating() {
        assert_eq!(fixed(0.9989996, 6, 0.999), "0.998999");
        assert_eq!(fixed(0.9989996, 6, 0.5), "0.999000");
        assert_eq!(fixed(1.0 - 1e-12, 6, 0.999), "0.999999");
        assert_eq!(fixed(1.0, 6, 0.999), "1.000000");
        assert_eq!(fixed(0.125f64.next_down(), 6, 0.999), "0.125000");
        assert_eq!(scientific(f64::NEG_INFINITY), "0");
        assert_eq!(scientific(-3.0), "1.00e-3");
        assert_eq!(scientific(-30103.0 + 5f64.log10()), "5.00e-30103");
        assert_eq!(scientific((9.999e-5f64).log10()), "1.00e-4");
        assert_eq!(scientific((9.98e-4f64).log10()), "9.98e-4");
        assert_eq!(decimals_for(0.999), 6);
        assert_eq!(decimals_for(0.9999999), 10);
    }

    #[test]
    fn text_names_the_recommendation_or_the_unreachable_target() {
        let mut inputs = Inputs {
            helpers: 5,
            clients: 200,
            client_dropout: 0.1,
            helper_availability: 0.99,
            target: 0.999,
        };
        let text = render(&inputs, &plan(&inputs));
        assert!(
            text.contains("recommended: threshold 4-of-5, min_clients"),
            "{text}"
        );
        inputs.helper_availability = 0.5;
        let text = render(&inputs, &plan(&inputs));
        assert!(
            text.contains("target unreachable: best achievable is threshold 3-of-5, min_clients 2"),
            "{text}"
        );
    }
}
