//! Training machinery shared by every training program: optimisers with checkpointable
//! state, learning-rate schedules, and atomic checkpoints that resume exactly.

pub mod checkpoint;
pub mod optim;
pub mod schedule;
