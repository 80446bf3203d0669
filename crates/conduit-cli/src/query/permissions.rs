//! `--allow`, `--deny`, `--read-only`, `--ask`: the permission callback of `conduit query`.
//!
//! The CLI sends a `can_use_tool` request for every tool call it would otherwise ask a person
//! about. The answer is, in this order:
//!
//! 1. a `--deny` rule touches the call → denied, naming the rule;
//! 2. `--read-only` → allowed when the call is read-only, denied otherwise (it decides every
//!    call, which is why `--allow` and `--ask` cannot be combined with it);
//! 3. an `--allow` rule covers the call → allowed;
//! 4. `--ask` → the person at the terminal answers ([`super::ask`]);
//! 5. otherwise → denied, with a message saying which flag would allow it.
//!
//! A denial is sent back to the model as the tool's error result, and the turn goes on.
//!
//! `--deny` rules are also checked by a `PreToolUse` hook, which runs before *every* tool call,
//! so they also stop the calls the CLI would run without asking (tools in `--allowed-tools`,
//! the commands it auto-approves as read-only, a permissive `--permission-mode`).

use std::sync::Arc;

use claude_conduit::Error;
use claude_conduit::hooks::{HookInput, HookMatcher, HookOutput};
use claude_conduit::permission::policy::{
    AllowList, Chain, DenyList, Policy, PolicyHandler, ReadOnly, Rule, Verdict,
};
use claude_conduit::permission::{PermissionDecision, PermissionHandler, PermissionRequest};
use serde_json::Value;

use super::ask::Asker;

/// The permission flags of `conduit query`.
#[derive(Debug, Clone, Default)]
pub struct PermissionFlags {
    /// `--allow` rules.
    pub allow: Vec<Rule>,
    /// `--deny` rules.
    pub deny: Vec<Rule>,
    /// `--read-only`.
    pub read_only: bool,
    /// `--ask`.
    pub ask: bool,
}

/// Parses a `--allow`/`--deny` value (clap value parser; its message is the rule parser's).
pub fn parse_rule(text: &str) -> Result<Rule, String> {
    Rule::parse(text).map_err(|e| match e {
        Error::InvalidOptions(why) => why,
        other => other.to_string(),
    })
}

impl PermissionFlags {
    /// Whether any permission flag was given (otherwise no callback is installed at all).
    pub fn any(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty() || self.read_only || self.ask
    }

    /// Combinations that cannot do what they say.
    pub fn check(&self) -> Result<(), Error> {
        if self.read_only && (!self.allow.is_empty() || self.ask) {
            return Err(Error::InvalidOptions(
                "--read-only decides every permission request by itself (read-only calls are \
                 allowed, everything else is denied), so --allow and --ask would never apply; \
                 drop them or drop --read-only"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// The permission handler, or `None` when no permission flag was given.
    pub fn handler(&self) -> Option<impl PermissionHandler + use<>> {
        if !self.any() {
            return None;
        }
        let mut chain = Chain::new();
        if !self.deny.is_empty() {
            chain = chain.with(DenyList(self.deny.clone()));
        }
        if self.read_only {
            chain = chain.with(ReadOnly);
        }
        if !self.allow.is_empty() {
            chain = chain.with(AllowList(self.allow.clone()));
        }
        let policy = PolicyHandler::new(chain);
        let policy = if self.ask {
            policy.fallback(Asker::new())
        } else {
            policy.fallback(|req: PermissionRequest| async move {
                PermissionDecision::deny(not_allowed_message(&req))
            })
        };
        let policy = Arc::new(policy);
        // Tell the person running the command about every denial, not only the model.
        Some(move |req: PermissionRequest| {
            let policy = Arc::clone(&policy);
            async move {
                let tool = req.tool_name.clone();
                let decision = policy.decide(req).await;
                if let PermissionDecision::Deny { message, .. } = &decision {
                    eprintln!("[permission] {tool} denied: {message}");
                }
                decision
            }
        })
    }

    /// The `PreToolUse` matcher that applies the `--deny` rules to every tool call, or `None`
    /// without `--deny`.
    pub fn deny_hook(&self) -> Option<HookMatcher> {
        if self.deny.is_empty() {
            return None;
        }
        let deny = Arc::new(DenyList(self.deny.clone()));
        Some(
            HookMatcher::all().callback(move |input: HookInput, _tool_use_id| {
                let deny = Arc::clone(&deny);
                async move {
                    let Some(tool) = input.tool_name() else {
                        return HookOutput::default();
                    };
                    let call = PermissionRequest::new(
                        tool,
                        input.tool_input().cloned().unwrap_or(Value::Null),
                    );
                    match deny.evaluate(&call) {
                        Verdict::Deny(message) => {
                            eprintln!("[permission] {tool} denied: {message}");
                            HookOutput::deny_tool(message)
                        }
                        _ => HookOutput::default(),
                    }
                }
            }),
        )
    }
}

/// The denial for a call no flag allowed, with the `--allow` rule that would allow it.
fn not_allowed_message(req: &PermissionRequest) -> String {
    let rule = match (req.tool_name.as_str(), req.input_str("command")) {
        ("Bash", Some(command)) => match command.split_whitespace().next() {
            Some(program) => format!("Bash({program} *)"),
            None => "Bash".to_owned(),
        },
        (tool, _) => tool.to_owned(),
    };
    format!(
        "{} was denied: no --allow rule of `conduit query` covers this call (the user can allow \
         it with --allow '{rule}', or be asked with --ask)",
        req.tool_name
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(texts: &[&str]) -> Vec<Rule> {
        texts.iter().filter_map(|t| Rule::parse(t).ok()).collect()
    }

    fn decide(flags: &PermissionFlags, tool: &str, input: Value) -> PermissionDecision {
        let Some(handler) = flags.handler() else {
            panic!("a handler");
        };
        futures::executor::block_on(handler.decide(PermissionRequest::new(tool, input)))
    }

    #[test]
    fn no_flag_no_handler() {
        assert!(PermissionFlags::default().handler().is_none());
        assert!(PermissionFlags::default().deny_hook().is_none());
    }

    #[test]
    fn deny_wins_over_allow_and_the_default_is_deny() {
        let flags = PermissionFlags {
            allow: rules(&["Bash(git *)"]),
            deny: rules(&["Bash(git push *)"]),
            ..Default::default()
        };
        assert!(decide(&flags, "Bash", json!({"command": "git status"})).is_allow());
        let pushed = decide(&flags, "Bash", json!({"command": "git push origin"}));
        assert!(
            matches!(&pushed, PermissionDecision::Deny { message, .. } if message.contains("Bash(git push *)")),
            "{pushed:?}"
        );
        let other = decide(&flags, "Bash", json!({"command": "touch x"}));
        assert!(
            matches!(&other, PermissionDecision::Deny { message, interrupt: false } if message.contains("--allow 'Bash(touch *)'")),
            "{other:?}"
        );
    }

    #[test]
    fn read_only_allows_reads_and_denies_writes() {
        let flags = PermissionFlags {
            read_only: true,
            ..Default::default()
        };
        assert!(decide(&flags, "Bash", json!({"command": "ls -la"})).is_allow());
        assert!(!decide(&flags, "Bash", json!({"command": "touch x"})).is_allow());
        assert!(!decide(&flags, "Write", json!({"file_path": "/tmp/x"})).is_allow());
        let with_allow = PermissionFlags {
            allow: rules(&["Write"]),
            ..flags
        };
        assert!(with_allow.check().is_err());
    }

    #[test]
    fn bad_rules_are_reported_with_the_parsers_message() {
        let err = parse_rule("Bash(git *").err().unwrap_or_default();
        assert!(err.contains("unbalanced parenthesis"), "{err}");
        assert!(parse_rule("Bash(git *)").is_ok());
    }
}
