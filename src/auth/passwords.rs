//! argon2id password hashing on a bounded pool of its own threads (it is deliberately slow,
//! and each hash holds 19 MiB).
//!
//! One hashing thread per CPU takes jobs from a bounded queue; a request that finds the queue
//! full is refused with [`AuthError::Busy`] (503) at once, and one that waited longer than
//! [`LONGEST_WAIT`] is refused when its turn comes (its client has likely given up). A flood
//! of logins therefore costs a fixed amount of memory: each hashing thread owns one argon2
//! working area for its whole life and hashes in it (19 MiB per CPU, allocated once). Letting
//! argon2 allocate per hash instead left the allocator holding a fresh 19 MiB after each of
//! the first logins (150 MiB after ten, measured), and tokio's blocking pool would run far
//! more hashes at once than there are CPUs.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{mpsc, oneshot};

use super::limits::{count_refusal, Refusal};
use super::AuthError;

/// Jobs that may wait in the queue, per hashing thread.
const WAITING_PER_THREAD: usize = 16;
/// The longest a job waits for its turn before it is refused.
const LONGEST_WAIT: Duration = Duration::from_secs(10);

/// What a hashing thread does.
enum Work {
    Hash {
        password: String,
        done: oneshot::Sender<Option<String>>,
    },
    Verify {
        password: String,
        phc: String,
        done: oneshot::Sender<bool>,
    },
}

struct Job {
    work: Work,
    queued_at: Instant,
}

/// The queue in front of the hashing threads (started on first use).
fn queue() -> &'static mpsc::Sender<Job> {
    static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    QUEUE.get_or_init(|| {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let (sender, receiver) = mpsc::channel(threads * WAITING_PER_THREAD);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = receiver.clone();
            let started = std::thread::Builder::new()
                .name(format!("enclave-hash-{i}"))
                .spawn(move || run_hashing_thread(&receiver));
            if let Err(e) = started {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        sender
    })
}

fn run_hashing_thread(receiver: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, not while hashing.
        let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).blocking_recv();
        let Some(job) = job else { return };
        if job.queued_at.elapsed() > LONGEST_WAIT {
            count_refusal(Refusal::HashingPool);
            // Dropping the reply sender tells the waiting request it was refused.
            continue;
        }
        metrics::counter!("enclave_password_hashes_total").increment(1);
        match job.work {
            Work::Hash { password, done } => {
                let _ = done.send(hash_in(&mut memory, password.as_bytes()));
            }
            Work::Verify { password, phc, done } => {
                let _ = done.send(verify_in(&mut memory, password.as_bytes(), &phc).unwrap_or(false));
            }
        }
    }
}

/// The first `blocks` blocks of the thread's working area, grown on first use.
fn working_area(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    &mut memory[..blocks]
}

/// A new PHC string for `password`: argon2id with the crate's recommended parameters.
fn hash_in(memory: &mut Vec<Block>, password: &[u8]) -> Option<String> {
    let argon2 = Argon2::default();
    let params = argon2.params().clone();
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.as_salt().decode_b64(&mut salt_bytes).ok()?;
    let length = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let output = Output::init_with(length, |out| {
        argon2
            .hash_password_into_with_memory(password, salt_bytes, out, working_area(memory, params.block_count()))
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .ok()?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).ok()?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Some(phc.to_string())
}

/// Whether `password` matches the PHC string, hashed with the string's own algorithm,
/// version and parameters (compared in constant time).
fn verify_in(memory: &mut Vec<Block>, password: &[u8], phc: &str) -> Option<bool> {
    let parsed = PasswordHash::new(phc).ok()?;
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = parsed.salt?.decode_b64(&mut salt_bytes).ok()?;
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut out = vec![0u8; expected.len()];
    argon2
        .hash_password_into_with_memory(
            password,
            salt_bytes,
            &mut out,
            working_area(memory, params.block_count()),
        )
        .ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(&out).ok()? == expected)
}

/// Queues `work` and waits for its answer; `Busy` when the queue is full or the wait was too long.
async fn submit<T>(work: Work, answer: oneshot::Receiver<T>) -> Result<T, AuthError> {
    let job = Job {
        work,
        queued_at: Instant::now(),
    };
    if queue().try_send(job).is_err() {
        count_refusal(Refusal::HashingPool);
        return Err(AuthError::Busy);
    }
    answer.await.map_err(|_| AuthError::Busy)
}

/// Hashes a password into a PHC string (argon2id, the crate's recommended parameters).
pub async fn hash(password: String) -> Result<String, AuthError> {
    let (done, answer) = oneshot::channel();
    submit(Work::Hash { password, done }, answer)
        .await?
        .ok_or(AuthError::Hashing)
}

/// Whether `password` matches the PHC string (`Busy` when the pool is full).
pub async fn verify(password: String, phc: String) -> Result<bool, AuthError> {
    let (done, answer) = oneshot::channel();
    submit(Work::Verify { password, phc, done }, answer).await
}

/// Spends the time of one verification against a hash nobody has (and is refused like one
/// when the pool is full), so that a name of no account answers like a wrong password.
pub async fn verify_dummy(password: String) -> Result<(), AuthError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = match DUMMY.get() {
        Some(phc) => phc.clone(),
        None => {
            let phc = hash("not a real password, only for timing".into()).await?;
            DUMMY.get_or_init(|| phc).clone()
        }
    };
    verify(password, phc).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_made_in_the_working_area_verify_with_the_crate_and_back() {
        let mut memory = Vec::new();
        let ours = hash_in(&mut memory, b"correct horse battery").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery", &parsed)
            .is_ok());
        assert!(Argon2::default().verify_password(b"wrong", &parsed).is_err());

        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default().hash_password(b"staple", &salt).unwrap().to_string();
        // The same (dirty) working area serves the next hash.
        assert_eq!(verify_in(&mut memory, b"staple", &theirs), Some(true));
        assert_eq!(verify_in(&mut memory, b"stapler", &theirs), Some(false));
        assert_eq!(verify_in(&mut memory, b"staple", "not a phc string"), None);
    }
}
