//! The system log: Okta's LogEvent (`/api/v1/logs`) as the domain records it.
//!
//! Events are written in the same request as the change they describe and never carry secrets
//! (no passwords, tokens or cookie values; ids and logins only).

use std::future::Future;

use crate::clock::Timestamp;
use crate::ids::{IdKind, new_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub id: String,
    /// `User`, `PublicClientApp` (an admin API token), `SystemPrincipal`.
    pub kind: String,
    pub alternate_id: String,
    pub display_name: String,
}

impl Actor {
    pub fn user(id: &str, login: &str) -> Self {
        Actor {
            id: id.to_owned(),
            kind: "User".into(),
            alternate_id: login.to_owned(),
            display_name: login.to_owned(),
        }
    }

    pub fn api_token(id: &str, name: &str) -> Self {
        Actor {
            id: id.to_owned(),
            kind: "PublicClientApp".into(),
            alternate_id: name.to_owned(),
            display_name: name.to_owned(),
        }
    }

    pub fn system() -> Self {
        Actor {
            id: "system".into(),
            kind: "SystemPrincipal".into(),
            alternate_id: "system".into(),
            display_name: "Latchkey".into(),
        }
    }

    /// Someone who claimed a username that may not exist: the claimed name only.
    pub fn unknown(claimed: &str) -> Self {
        let name: String = claimed.chars().take(100).collect();
        Actor { id: "unknown".into(), kind: "User".into(), alternate_id: name.clone(), display_name: name }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: String,
    pub kind: String,
    pub alternate_id: String,
    pub display_name: String,
}

impl Target {
    pub fn new(id: &str, kind: &str, name: &str) -> Self {
        Target {
            id: id.to_owned(),
            kind: kind.to_owned(),
            alternate_id: name.to_owned(),
            display_name: name.to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub published: Timestamp,
    pub event_type: String,
    pub severity: &'static str,
    pub display_message: String,
    /// `SUCCESS`, `FAILURE`, `DENY`, `ALLOW`.
    pub outcome: &'static str,
    pub reason: Option<String>,
    pub actor: Actor,
    pub targets: Vec<Target>,
    pub client_ip: Option<String>,
    pub session_id: Option<String>,
    pub request_id: Option<String>,
}

impl Event {
    pub fn new(event_type: &str, message: &str, outcome: &'static str, actor: Actor, now: Timestamp) -> Self {
        Event {
            id: new_id(IdKind::Event),
            published: now,
            event_type: event_type.to_owned(),
            severity: if outcome == "SUCCESS" || outcome == "ALLOW" { "INFO" } else { "WARN" },
            display_message: message.to_owned(),
            outcome,
            reason: None,
            actor,
            targets: Vec::new(),
            client_ip: None,
            session_id: None,
            request_id: None,
        }
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }

    pub fn target(mut self, target: Target) -> Self {
        self.targets.push(target);
        self
    }

    pub fn client(mut self, ip: Option<&str>) -> Self {
        self.client_ip = ip.map(str::to_owned);
        self
    }

    pub fn session(mut self, session_id: &str) -> Self {
        self.session_id = Some(session_id.to_owned());
        self
    }

    /// `user.session.start` for a session created from a session token.
    pub fn session_start(session: &crate::sessions::Session, login: &str, now: Timestamp) -> Self {
        Event::new(
            "user.session.start",
            "User login to Okta",
            "SUCCESS",
            Actor::user(&session.user_id, login),
            now,
        )
        .reason("SESSION_TOKEN")
        .target(Target::new(&session.id, "Session", login))
        .session(&session.id)
    }

    /// `user.session.start` refused: an unknown, used or expired session token was presented.
    pub fn session_refused(now: Timestamp) -> Self {
        Event::new(
            "user.session.start",
            "User login to Okta",
            "FAILURE",
            Actor::unknown("session token"),
            now,
        )
        .reason("INVALID_SESSION_TOKEN")
    }

    /// `user.session.end` for a session of the user `login`, with why it ended.
    pub fn session_end(
        session_id: &str,
        login: &str,
        reason: crate::sessions::EndReason,
        actor: Actor,
        now: Timestamp,
    ) -> Self {
        Event::new("user.session.end", "User session ended", "SUCCESS", actor, now)
            .reason(reason.as_str())
            .target(Target::new(session_id, "Session", login))
            .session(session_id)
    }
}

/// One condition of a log query: Okta's `filter` supports `eventType`, `actor.id`, `target.id`
/// and `outcome.result`, compared with `eq`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogField {
    EventType,
    ActorId,
    TargetId,
    Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogQuery {
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Alternatives (`or`) of conjunctions (`and`) of equalities.
    pub filter: Vec<Vec<(LogField, String)>>,
    /// Continue after this position (the cursor of the last event of the previous page).
    pub after: Option<i64>,
    pub limit: u32,
}

/// Where use cases send their events. The change an event describes has already happened when it
/// is recorded, so recording cannot fail for the caller: an adapter that cannot write the event
/// reports that in the process log. The server's adapter commits events in groups; the store itself
/// records each event with its own write (the command line uses that).
pub trait AuditLog: Send + Sync {
    /// Returns once the event is durable (or known to be lost and reported).
    fn record(&self, event: Event) -> impl Future<Output = ()> + Send;

    /// Records several events, in order, returning once all are durable. A use case that changes
    /// many things at once (a group rule applied to every user) logs them together: an adapter
    /// that commits in groups then commits them in few writes instead of waiting for one each.
    fn record_all(&self, events: Vec<Event>) -> impl Future<Output = ()> + Send {
        async move {
            for event in events {
                self.record(event).await;
            }
        }
    }
}

/// Parses `eventType eq "user.session.start" or (actor.id eq "00u1" and outcome.result eq "FAILURE")`
/// into disjunctive normal form (parentheses are accepted around conjunctions only).
pub fn parse_filter(text: &str) -> Result<Vec<Vec<(LogField, String)>>, String> {
    if text.len() > 2048 {
        return Err("the filter is too long".into());
    }
    let mut alternatives = Vec::new();
    for alternative in split_keyword(text, " or ") {
        let inner = alternative.trim().trim_start_matches('(').trim_end_matches(')');
        let mut conjunction = Vec::new();
        for condition in split_keyword(inner, " and ") {
            let condition = condition.trim();
            let (field, rest) =
                condition.split_once(' ').ok_or_else(|| format!("cannot read '{condition}'"))?;
            let field = match field {
                "eventType" => LogField::EventType,
                "actor.id" => LogField::ActorId,
                "target.id" => LogField::TargetId,
                "outcome.result" => LogField::Outcome,
                other => return Err(format!("'{other}' cannot be filtered on")),
            };
            let value = rest
                .trim()
                .strip_prefix("eq ")
                .map(str::trim)
                .and_then(|v| v.strip_prefix('"'))
                .and_then(|v| v.strip_suffix('"'))
                .filter(|v| !v.contains('"'))
                .ok_or_else(|| format!("expected eq \"value\" in '{condition}'"))?;
            conjunction.push((field, value.to_owned()));
        }
        if conjunction.is_empty() || conjunction.len() > 16 {
            return Err("each alternative needs 1 to 16 conditions".into());
        }
        alternatives.push(conjunction);
    }
    if alternatives.len() > 32 {
        return Err("too many alternatives".into());
    }
    Ok(alternatives)
}

/// Splits on a keyword outside double quotes.
fn split_keyword<'a>(text: &'a str, keyword: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'"' {
            quoted = !quoted;
        } else if !quoted && text[i..].starts_with(keyword) {
            parts.push(&text[start..i]);
            i += keyword.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_into_alternatives() {
        let f = parse_filter(
            r#"eventType eq "user.session.start" or (actor.id eq "00u1" and outcome.result eq "FAILURE")"#,
        )
        .unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0], vec![(LogField::EventType, "user.session.start".to_owned())]);
        assert_eq!(f[1].len(), 2);
        assert!(parse_filter(r#"password eq "x""#).is_err());
        assert!(parse_filter(r#"eventType sw "user""#).is_err());
        assert!(parse_filter(r#"eventType eq "a" or"#).is_err());
        let quoted = parse_filter(r#"actor.id eq "a or b""#).unwrap();
        assert_eq!(quoted[0][0].1, "a or b");
    }
}
