//! Group commit: the writes on every command's path (a command's acceptance, a flow's step) from
//! all the meshes a process owns are committed together, several to one transaction, by one
//! committer thread with one connection.
//!
//! Each write is a unit of work that may run more than once (`Fn`): it runs inside the group's
//! transaction, and its result is handed back only once the group has committed. When one unit
//! fails (a fenced owner, a refused compare-and-set, a command recorded before), the group is
//! rolled back and every unit of it runs again in a transaction of its own, so each gets the
//! answer it would have got alone and no unit's failure undoes another's write. When the group's
//! transaction itself fails (its `BEGIN` or `COMMIT`, or the connection), whether it landed is
//! unknown, so every unit gets that (transient) error and its caller retries, as it would have
//! after a failed transaction of its own.
//!
//! One committer means one write transaction at a time from this process: the database is not
//! asked to interleave many short transactions (on a small machine, where it shares the cores
//! with the workers, their contention costs more than the writes), and a group's commit pays for
//! all of its units. Only MariaDB/MySQL stores group; SQLite has one connection anyway.

use std::sync::mpsc;

use super::StoreError;
use super::atomic::atomically;
use crate::database::{AnyConnection, Pool};

/// Most units one group commits.
const MAX_GROUP: usize = 64;

/// A unit of work waiting for its group, with where its answer goes.
trait Unit: Send {
    /// Runs the work inside the current transaction and keeps its result.
    fn run(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError>;
    /// Hands back the kept result, or `error`.
    fn answer(self: Box<Self>, error: Option<StoreError>);
}

struct Waiting<T, F> {
    op: &'static str,
    work: F,
    result: Option<T>,
    reply: tokio::sync::oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Unit for Waiting<T, F>
where
    T: Send,
    F: Fn(&mut AnyConnection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &mut AnyConnection) -> Result<(), StoreError> {
        self.result = Some((self.work)(conn)?);
        Ok(())
    }

    fn answer(self: Box<Self>, error: Option<StoreError>) {
        let op = self.op;
        let outcome = match error {
            Some(error) => Err(error),
            None => self.result.ok_or(StoreError::Aborted { op }),
        };
        let _ = self.reply.send(outcome);
    }
}

/// The sending end of a store's committer.
#[derive(Debug)]
pub(crate) struct GroupCommitter {
    units: mpsc::Sender<Box<dyn Unit>>,
}

impl GroupCommitter {
    /// Starts the committer thread, writing with connections of `pool`. The thread ends when the
    /// committer is dropped.
    pub(crate) fn start(pool: Pool) -> std::io::Result<Self> {
        let (units, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("store-committer".into())
            .spawn(move || commit_groups(&pool, &queue))?;
        Ok(Self { units })
    }

    /// Commits `work` with the next group and returns its result once that group committed.
    pub(crate) async fn commit<T, F>(&self, op: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&mut AnyConnection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let unit = Box::new(Waiting {
            op,
            work,
            result: None,
            reply,
        });
        self.units
            .send(unit)
            .map_err(|_| StoreError::Aborted { op })?;
        answer.await.map_err(|_| StoreError::Aborted { op })?
    }
}

/// The committer thread: takes what is waiting (at least one unit, at most [`MAX_GROUP`]) and
/// commits it as one group, until every sender is gone.
fn commit_groups(pool: &Pool, queue: &mpsc::Receiver<Box<dyn Unit>>) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(unit) => group.push(unit),
                Err(_) => break,
            }
        }
        let mut conn = match pool.get() {
            Ok(conn) => conn,
            Err(e) => {
                let reason = e.to_string();
                for unit in group {
                    unit.answer(Some(StoreError::Pool {
                        op: "commit a group of writes",
                        reason: reason.clone(),
                    }));
                }
                continue;
            }
        };
        if group.len() > 1 {
            let together = atomically(&mut conn, |conn| {
                group.iter_mut().try_for_each(|unit| unit.run(conn))
            });
            match together {
                Ok(()) => {
                    conn.record(true);
                    for unit in group {
                        unit.answer(None);
                    }
                    continue;
                }
                // Whether the group landed is unknown (or the connection is gone): every unit
                // is told so, and its caller retries as after a failed transaction of its own.
                Err(error) if error.is_transient() => {
                    conn.record(false);
                    let reason = error.to_string();
                    for unit in group {
                        unit.answer(Some(StoreError::Pool {
                            op: "commit a group of writes",
                            reason: reason.clone(),
                        }));
                    }
                    continue;
                }
                // A unit failed and the group was rolled back: each runs again on its own.
                Err(_) => {}
            }
        }
        for mut unit in group {
            let outcome = atomically(&mut conn, |conn| unit.run(conn));
            conn.record(!outcome.as_ref().is_err_and(StoreError::is_transient));
            unit.answer(outcome.err());
        }
    }
}
