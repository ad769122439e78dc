//! The local machine's resources as the scheduler hands them out: cpu slots (threads), GPU
//! ids and an optional memory budget. A node starts when its [`Request`] fits; what it took
//! comes back with its [`Grant`] when it ends.
//!
//! Two rules keep a run from stalling: a node asking for more cpus than the machine has is
//! given all of them, and a node declaring more memory than the whole budget runs alone
//! (it would otherwise never start). A node asking for more GPUs than exist can never run:
//! [`ResourcePool::fit`] says so instead of leaving it queued forever.

/// What one node asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Request {
    pub cpu: usize,
    pub gpu: usize,
    pub memory_mb: Option<u64>,
}

/// What one running node holds; given back through [`ResourcePool::release`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grant {
    /// Cpu slots, which is also the thread count the node is given.
    pub cpu: usize,
    /// GPU ids, as the node sees them (`CUDA_VISIBLE_DEVICES`).
    pub gpus: Vec<usize>,
    /// Memory taken from the budget (less than declared for a node larger than the budget).
    pub memory_mb: u64,
}

/// Whether a request can start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// It fits now: [`ResourcePool::acquire`] will grant it.
    Now,
    /// It fits once running nodes give back what they hold.
    Later,
    /// It can never fit on this machine; the reason is for the user.
    Never(String),
}

/// Free and total cpu slots, GPU ids and memory.
#[derive(Debug, Clone)]
pub struct ResourcePool {
    cpu_total: usize,
    cpu_free: usize,
    gpu_total: usize,
    gpus_free: Vec<usize>,
    memory_free: Option<u64>,
    /// Nodes holding a grant.
    holders: usize,
}

impl ResourcePool {
    /// `cpus` slots (at least one), these GPU ids, and a memory budget in MiB (None: memory
    /// is not scheduled).
    pub fn new(cpus: usize, gpus: Vec<usize>, memory_mb: Option<u64>) -> Self {
        let cpus = cpus.max(1);
        ResourcePool {
            cpu_total: cpus,
            cpu_free: cpus,
            gpu_total: gpus.len(),
            gpus_free: gpus,
            memory_free: memory_mb,
            holders: 0,
        }
    }

    /// Cpu slots in all.
    pub fn cpu_total(&self) -> usize {
        self.cpu_total
    }

    /// The cpu slots (threads) a node asking for `cpu` gets: never more than the machine has.
    pub fn threads_for(&self, cpu: usize) -> usize {
        cpu.clamp(1, self.cpu_total)
    }

    /// Nodes holding a grant now.
    pub fn holders(&self) -> usize {
        self.holders
    }

    /// Whether `req` can start now, later, or never.
    pub fn fit(&self, req: &Request) -> Fit {
        if req.gpu > self.gpu_total {
            return Fit::Never(format!(
                "needs {} GPU(s) but {} are available (pass --gpus, or set CUDA_VISIBLE_DEVICES)",
                req.gpu, self.gpu_total
            ));
        }
        let memory_ok = match (req.memory_mb, self.memory_free) {
            (Some(need), Some(free)) => need <= free || self.holders == 0,
            _ => true,
        };
        if self.threads_for(req.cpu) <= self.cpu_free
            && req.gpu <= self.gpus_free.len()
            && memory_ok
        {
            Fit::Now
        } else {
            Fit::Later
        }
    }

    /// Takes what `req` needs, if it fits now.
    pub fn acquire(&mut self, req: &Request) -> Option<Grant> {
        if self.fit(req) != Fit::Now {
            return None;
        }
        let cpu = self.threads_for(req.cpu);
        self.cpu_free -= cpu;
        let gpus: Vec<usize> = self.gpus_free.drain(..req.gpu).collect();
        let memory_mb = match (req.memory_mb, self.memory_free.as_mut()) {
            (Some(need), Some(free)) => {
                let taken = need.min(*free);
                *free -= taken;
                taken
            }
            _ => 0,
        };
        self.holders += 1;
        Some(Grant {
            cpu,
            gpus,
            memory_mb,
        })
    }

    /// Gives back what a finished node held.
    pub fn release(&mut self, grant: Grant) {
        self.cpu_free = (self.cpu_free + grant.cpu).min(self.cpu_total);
        self.gpus_free.extend(grant.gpus);
        self.gpus_free.sort_unstable();
        if let Some(free) = self.memory_free.as_mut() {
            *free += grant.memory_mb;
        }
        self.holders = self.holders.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cpu: usize, gpu: usize, memory_mb: Option<u64>) -> Request {
        Request {
            cpu,
            gpu,
            memory_mb,
        }
    }

    #[test]
    fn cpu_slots_are_shared_and_returned() {
        let mut pool = ResourcePool::new(4, vec![], None);
        let a = pool.acquire(&req(3, 0, None)).unwrap();
        assert_eq!(a.cpu, 3);
        assert_eq!(pool.fit(&req(2, 0, None)), Fit::Later);
        let b = pool.acquire(&req(1, 0, None)).unwrap();
        assert!(pool.acquire(&req(1, 0, None)).is_none());
        pool.release(a);
        assert_eq!(pool.fit(&req(2, 0, None)), Fit::Now);
        pool.release(b);
        assert_eq!(pool.holders(), 0);
        assert_eq!(pool.acquire(&req(4, 0, None)).unwrap().cpu, 4);
    }

    #[test]
    fn a_request_over_the_machine_gets_every_cpu() {
        let mut pool = ResourcePool::new(2, vec![], None);
        assert_eq!(pool.threads_for(16), 2);
        assert_eq!(pool.threads_for(0), 1);
        let g = pool.acquire(&req(16, 0, None)).unwrap();
        assert_eq!(g.cpu, 2);
        assert_eq!(pool.fit(&req(1, 0, None)), Fit::Later);
    }

    #[test]
    fn zero_cpus_still_make_one_slot() {
        let pool = ResourcePool::new(0, vec![], None);
        assert_eq!(pool.cpu_total(), 1);
        assert_eq!(pool.fit(&req(1, 0, None)), Fit::Now);
    }

    #[test]
    fn gpu_ids_are_exclusive_and_come_back() {
        let mut pool = ResourcePool::new(8, vec![2, 5, 7], None);
        let a = pool.acquire(&req(1, 2, None)).unwrap();
        assert_eq!(a.gpus, vec![2, 5]);
        let b = pool.acquire(&req(1, 1, None)).unwrap();
        assert_eq!(b.gpus, vec![7]);
        assert_eq!(pool.fit(&req(1, 1, None)), Fit::Later);
        pool.release(a);
        let c = pool.acquire(&req(1, 2, None)).unwrap();
        assert_eq!(c.gpus, vec![2, 5]);
        assert!(b.gpus.iter().all(|g| !c.gpus.contains(g)));
    }

    #[test]
    fn more_gpus_than_exist_never_fit() {
        let pool = ResourcePool::new(4, vec![0], None);
        match pool.fit(&req(1, 2, None)) {
            Fit::Never(why) => assert!(why.contains("needs 2 GPU(s) but 1 are available")),
            other => panic!("expected Never, got {other:?}"),
        }
        let none = ResourcePool::new(4, vec![], None);
        assert!(matches!(none.fit(&req(1, 1, None)), Fit::Never(_)));
    }

    #[test]
    fn memory_budget_is_scheduled() {
        let mut pool = ResourcePool::new(8, vec![], Some(1000));
        let a = pool.acquire(&req(1, 0, Some(600))).unwrap();
        assert_eq!(a.memory_mb, 600);
        assert_eq!(pool.fit(&req(1, 0, Some(500))), Fit::Later);
        // A node that declares no memory is not held back by the budget.
        let b = pool.acquire(&req(1, 0, None)).unwrap();
        assert_eq!(b.memory_mb, 0);
        let c = pool.acquire(&req(1, 0, Some(400))).unwrap();
        pool.release(a);
        pool.release(c);
        pool.release(b);
        assert_eq!(pool.fit(&req(1, 0, Some(1000))), Fit::Now);
    }

    #[test]
    fn a_node_larger_than_the_budget_runs_alone_and_the_budget_is_kept() {
        let mut pool = ResourcePool::new(8, vec![], Some(1000));
        let small = pool.acquire(&req(1, 0, Some(100))).unwrap();
        assert_eq!(pool.fit(&req(1, 0, Some(5000))), Fit::Later);
        pool.release(small);
        let big = pool.acquire(&req(1, 0, Some(5000))).unwrap();
        assert_eq!(big.memory_mb, 1000);
        assert_eq!(pool.fit(&req(1, 0, Some(1))), Fit::Later);
        pool.release(big);
        // The budget is back to what it was, not inflated by the oversized request.
        let a = pool.acquire(&req(1, 0, Some(1000))).unwrap();
        assert_eq!(pool.fit(&req(1, 0, Some(1))), Fit::Later);
        pool.release(a);
    }

    #[test]
    fn without_a_budget_memory_is_not_scheduled() {
        let mut pool = ResourcePool::new(2, vec![], None);
        let a = pool.acquire(&req(1, 0, Some(1 << 40))).unwrap();
        assert_eq!(a.memory_mb, 0);
        assert_eq!(pool.fit(&req(1, 0, Some(1 << 40))), Fit::Now);
    }

    proptest::proptest! {
        /// Any sequence of requests and releases: no cpu, GPU or MiB is handed out twice,
        /// and once everything is given back the pool is whole again.
        #[test]
        fn grants_never_overlap_and_all_comes_back(
            cpus in 1usize..8,
            gpu_count in 0usize..4,
            budget in proptest::option::of(1u64..4000),
            ops in proptest::collection::vec((0usize..10, 0usize..5, proptest::option::of(0u64..5000), proptest::bool::ANY), 1..60),
        ) {
            let gpus: Vec<usize> = (0..gpu_count).collect();
            let mut pool = ResourcePool::new(cpus, gpus.clone(), budget);
            let mut held: Vec<Grant> = Vec::new();
            for (cpu, gpu, mem, release_first) in ops {
                if release_first && !held.is_empty() {
                    pool.release(held.remove(0));
                }
                let req = Request { cpu, gpu, memory_mb: mem };
                let fit = pool.fit(&req);
                match pool.acquire(&req) {
                    Some(g) => {
                        proptest::prop_assert_eq!(&fit, &Fit::Now);
                        held.push(g);
                    }
                    None => proptest::prop_assert_ne!(&fit, &Fit::Now),
                }
                let cpu_held: usize = held.iter().map(|g| g.cpu).sum();
                proptest::prop_assert!(cpu_held <= cpus);
                let mut ids: Vec<usize> = held.iter().flat_map(|g| g.gpus.clone()).collect();
                let n = ids.len();
                ids.sort_unstable();
                ids.dedup();
                proptest::prop_assert_eq!(ids.len(), n);
                if let Some(b) = budget {
                    proptest::prop_assert!(held.iter().map(|g| g.memory_mb).sum::<u64>() <= b);
                }
                proptest::prop_assert_eq!(pool.holders(), held.len());
            }
            for g in held.drain(..) {
                pool.release(g);
            }
            let whole = Request { cpu: cpus, gpu: gpu_count, memory_mb: budget };
            let all = pool.acquire(&whole).expect("everything is free again");
            proptest::prop_assert_eq!(all.cpu, cpus);
            proptest::prop_assert_eq!(all.gpus, gpus);
            proptest::prop_assert_eq!(all.memory_mb, budget.unwrap_or(0));
        }
    }
}
