//! `hookrelayctl` as a child process, with the configuration of one test's [`Stack`].

use std::collections::HashMap;
use std::path::Path;

use hookrelay_testkit::{Run, Stack, process};

/// Runs `hookrelayctl <args>` with the stack's configuration and variables.
pub async fn ctl(stack: &Stack, args: &[&str]) -> Run {
    ctl_with(&stack.config, &stack.env, args).await
}

/// Runs `hookrelayctl --config <config> <args>` with `env` (and nothing of the caller's
/// hookrelay or Okta settings).
pub async fn ctl_with(config: &Path, env: &HashMap<String, String>, args: &[&str]) -> Run {
    process::run(
        Path::new(env!("CARGO_BIN_EXE_hookrelayctl")),
        config,
        env,
        args,
    )
    .await
}
