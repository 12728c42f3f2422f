//! The plan of a single-row call, as a state machine: the upsert, then (when it returned
//! nothing) the read of the row its key names, again from the start when that row vanished in
//! between; or, where no inserted flag can be returned, insert with `DO NOTHING`, read and lock
//! the existing row, update it.

use super::{not_found, Method, ATTEMPTS};
use crate::error::{Error, Result};
use crate::schema::InsertedFlag;
use crate::spec::Outcome;

/// The next statement of a single-row call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SingleStep {
    /// The upsert (`UpsertReturning`), then [`SinglePlan::upserted`].
    Upsert {
        flag: InsertedFlag,
        do_nothing: bool,
    },
    /// The row the input row's key names (`FetchExisting`, locked with `lock`), then
    /// [`SinglePlan::fetched`].
    Fetch { lock: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Upsert,
    Fetch,
    /// Two phases: the update of the locked row.
    UpdateLocked,
    Done,
}

/// A single-row call from its first statement to its row and outcome.
#[derive(Debug)]
pub(crate) struct SinglePlan<Out> {
    method: Method,
    before_triggers: bool,
    phase: Phase,
    attempt: usize,
    locked: Option<Out>,
    result: Option<(Out, Option<Outcome>)>,
}

impl<Out> SinglePlan<Out> {
    pub(crate) fn new(method: Method, before_triggers: bool) -> Self {
        SinglePlan {
            method,
            before_triggers,
            phase: Phase::Upsert,
            attempt: 0,
            locked: None,
            result: None,
        }
    }

    /// The next statement to send, `None` when the row is known.
    pub(crate) fn next(&self) -> Option<SingleStep> {
        match (self.phase, self.method) {
            (Phase::Upsert, Method::OneStatement(flag)) => Some(SingleStep::Upsert {
                flag,
                do_nothing: false,
            }),
            (Phase::Upsert, Method::TwoPhases) => Some(SingleStep::Upsert {
                flag: InsertedFlag::Always(true),
                do_nothing: true,
            }),
            (Phase::Fetch, _) => Some(SingleStep::Fetch {
                lock: self.method == Method::TwoPhases,
            }),
            (Phase::UpdateLocked, _) => Some(SingleStep::Upsert {
                flag: InsertedFlag::Always(false),
                do_nothing: false,
            }),
            (Phase::Done, _) => None,
        }
    }

    /// What the upsert returned.
    pub(crate) fn upserted(&mut self, row: Option<(Out, Option<bool>)>) {
        match (row, self.phase, self.method) {
            (Some((out, _)), Phase::Upsert, Method::OneStatement(InsertedFlag::Written)) => {
                self.done(out, None)
            }
            (Some((out, inserted)), Phase::Upsert, Method::OneStatement(_)) => {
                self.done(out, inserted.map(Outcome::written))
            }
            (Some((out, _)), Phase::Upsert, Method::TwoPhases) => {
                self.done(out, Some(Outcome::Inserted))
            }
            (Some((out, _)), _, _) => self.done(out, Some(Outcome::Updated)),
            (None, Phase::UpdateLocked, _) => match self.locked.take() {
                // Locked, the row is as it was read.
                Some(out) => self.done(out, Some(Outcome::Unchanged)),
                None => self.phase = Phase::Fetch,
            },
            (None, _, _) => self.phase = Phase::Fetch,
        }
    }

    /// What the read by key returned. A row that vanished starts the call over, at most
    /// [`ATTEMPTS`] times.
    pub(crate) fn fetched(&mut self, row: Option<Out>) -> Result<()> {
        match (row, self.method) {
            (Some(out), Method::TwoPhases) => {
                self.locked = Some(out);
                self.phase = Phase::UpdateLocked;
            }
            (Some(out), Method::OneStatement(_)) => self.done(out, Some(Outcome::Unchanged)),
            (None, _) => {
                self.attempt += 1;
                if self.attempt >= ATTEMPTS {
                    return Err(not_found(self.before_triggers, 0));
                }
                self.phase = Phase::Upsert;
            }
        }
        Ok(())
    }

    fn done(&mut self, out: Out, outcome: Option<Outcome>) {
        self.result = Some((out, outcome));
        self.phase = Phase::Done;
    }

    /// The row and, when the flag was known, its outcome.
    pub(crate) fn finish(self) -> Result<(Out, Option<Outcome>)> {
        self.result
            .ok_or_else(|| Error::internal("the single-row plan is not complete"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        method: Method,
        answers: &[Answer],
    ) -> (Vec<SingleStep>, Result<(&'static str, Option<Outcome>)>) {
        let mut plan = SinglePlan::new(method, false);
        let mut steps = Vec::new();
        let mut answers = answers.iter();
        while let Some(step) = plan.next() {
            steps.push(step);
            match (step, answers.next()) {
                (SingleStep::Upsert { .. }, Some(Answer::Row(out, flag))) => {
                    plan.upserted(Some((*out, *flag)))
                }
                (SingleStep::Upsert { .. }, Some(Answer::Nothing)) => plan.upserted(None),
                (SingleStep::Fetch { .. }, Some(Answer::Row(out, _))) => {
                    plan.fetched(Some(*out)).unwrap()
                }
                (SingleStep::Fetch { .. }, Some(Answer::Nothing)) => {
                    if let Err(e) = plan.fetched(None) {
                        return (steps, Err(e));
                    }
                }
                (_, None) => panic!("no answer for {step:?}"),
            }
        }
        (steps, plan.finish())
    }

    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Row(&'static str, Option<bool>),
        Nothing,
    }

    const XMAX: Method = Method::OneStatement(InsertedFlag::Xmax);

    #[test]
    fn a_returned_row_is_the_result_with_its_flag() {
        let (steps, result) = run(XMAX, &[Answer::Row("r", Some(true))]);
        assert_eq!(steps.len(), 1);
        assert_eq!(result.unwrap(), ("r", Some(Outcome::Inserted)));
    }

    #[test]
    fn a_kept_row_is_read_back_and_unchanged() {
        let (steps, result) = run(XMAX, &[Answer::Nothing, Answer::Row("r", None)]);
        assert_eq!(steps[1], SingleStep::Fetch { lock: false });
        assert_eq!(result.unwrap(), ("r", Some(Outcome::Unchanged)));
    }

    #[test]
    fn a_row_that_vanished_before_its_read_back_is_retried() {
        let answers = [
            Answer::Nothing,
            Answer::Nothing,
            Answer::Row("again", Some(true)),
        ];
        let (steps, result) = run(XMAX, &answers);
        assert_eq!(steps.len(), 3);
        assert_eq!(result.unwrap(), ("again", Some(Outcome::Inserted)));
    }

    #[test]
    fn a_row_vanishing_every_time_is_an_error_after_three_attempts() {
        let answers = [Answer::Nothing; 6];
        let (steps, result) = run(XMAX, &answers);
        assert_eq!(steps.len(), 2 * ATTEMPTS);
        assert!(matches!(result, Err(Error::Internal { .. })));
    }

    #[test]
    fn two_phases_insert_first_then_lock_then_update() {
        let (steps, result) = run(Method::TwoPhases, &[Answer::Row("new", None)]);
        assert_eq!(
            steps,
            [SingleStep::Upsert {
                flag: InsertedFlag::Always(true),
                do_nothing: true
            }]
        );
        assert_eq!(result.unwrap(), ("new", Some(Outcome::Inserted)));
        let answers = [
            Answer::Nothing,
            Answer::Row("old", None),
            Answer::Row("new", None),
        ];
        let (steps, result) = run(Method::TwoPhases, &answers);
        assert_eq!(steps[1], SingleStep::Fetch { lock: true });
        assert_eq!(
            steps[2],
            SingleStep::Upsert {
                flag: InsertedFlag::Always(false),
                do_nothing: false
            }
        );
        assert_eq!(result.unwrap(), ("new", Some(Outcome::Updated)));
    }

    #[test]
    fn two_phases_return_the_locked_row_when_the_update_writes_nothing() {
        let answers = [Answer::Nothing, Answer::Row("old", None), Answer::Nothing];
        let (_, result) = run(Method::TwoPhases, &answers);
        assert_eq!(result.unwrap(), ("old", Some(Outcome::Unchanged)));
    }

    #[test]
    fn an_unknown_flag_gives_no_outcome() {
        let method = Method::OneStatement(InsertedFlag::Unknown);
        let (_, result) = run(method, &[Answer::Row("r", None)]);
        assert_eq!(result.unwrap(), ("r", None));
    }
}
