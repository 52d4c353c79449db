//! The sharing-scheme options every command that makes a federation takes
//! (`init`, `demo`, `bench`): `--mode additive|threshold` (`shamir` is
//! accepted for `threshold`) and `--threshold T`, read the same way by all.

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

/// The sharing scheme of a round.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Additive n-of-n sharing over Z_2^32 (Z_2^64 when the quantization
    /// does not fit 32 bits for that many clients): every helper must answer.
    Additive,
    /// Shamir t-of-h sharing over F_p, p = 2^61 − 1: any t helpers finish a
    /// round.
    #[value(alias = "shamir")]
    Threshold,
}

impl Mode {
    /// `additive` or `threshold`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Additive => "additive",
            Mode::Threshold => "threshold",
        }
    }
}

/// `--mode` and `--threshold`.
#[derive(Args, Debug, Clone, Default)]
pub struct SharingArgs {
    /// Sharing scheme: `additive` n-of-n over Z_2^32 (Z_2^64 when the
    /// quantization does not fit 32 bits for that many clients; every helper
    /// must answer) or `threshold` (also `shamir`): Shamir t-of-h over F_p,
    /// p = 2^61 − 1, where any t helpers finish a round. Default: additive,
    /// or threshold when --threshold is given.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,
    /// Threshold t of threshold mode (implies `--mode threshold`): a
    /// majority of the helpers (2t > helpers, t ≤ helpers). Default: the
    /// smallest majority.
    #[arg(long, value_name = "T")]
    pub threshold: Option<usize>,
}

impl SharingArgs {
    /// The mode these options select.
    pub fn mode(&self) -> Mode {
        match (self.mode, self.threshold) {
            (Some(mode), _) => mode,
            (None, Some(_)) => Mode::Threshold,
            (None, None) => Mode::Additive,
        }
    }

    /// The threshold with `helpers` helpers: `None` in additive mode.
    /// `--mode additive` with `--threshold` is refused.
    pub fn threshold(&self, helpers: usize) -> Result<Option<usize>> {
        match (self.mode(), self.threshold) {
            (Mode::Additive, None) => Ok(None),
            (Mode::Additive, Some(t)) => {
                bail!("--threshold {t}: a threshold applies to --mode threshold only")
            }
            (Mode::Threshold, t) => Ok(Some(t.unwrap_or(helpers / 2 + 1))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        sharing: SharingArgs,
    }

    fn parse(args: &[&str]) -> Result<SharingArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("test").chain(args.iter().copied())).map(|c| c.sharing)
    }

    #[test]
    fn mode_and_threshold_read_alike_everywhere() {
        let with = |args: &[&str]| parse(args).expect("parses").threshold(5).expect("valid");
        assert_eq!(with(&[]), None);
        assert_eq!(with(&["--mode", "additive"]), None);
        assert_eq!(with(&["--mode", "threshold"]), Some(3));
        assert_eq!(with(&["--mode", "shamir"]), Some(3));
        assert_eq!(with(&["--mode", "shamir", "--threshold", "4"]), Some(4));
        // The flag `init` always had.
        assert_eq!(with(&["--threshold", "2"]), Some(2));
        let refused = parse(&["--mode", "additive", "--threshold", "2"])
            .expect("parses")
            .threshold(5)
            .expect_err("refused");
        assert!(
            refused.to_string().contains("--mode threshold only"),
            "{refused}"
        );
        assert!(parse(&["--mode", "paillier"]).is_err());
    }
}
