//! The second half of startup and reload: applying a [`Plan`]. Nothing here
//! can fail; what could was done while planning.
//!
//! Kept inputs and outputs keep their key, fds, queues, partial lines and
//! counters, so no writer or reader attached to an unchanged FIFO notices a
//! reload; only their settings change in place. Renewed ones move to the
//! fresh FIFO or file, and a renewed input reads what is left in its old
//! pipe first. Removed inputs are retired: read until their pipe is empty
//! (however long a full `block` output holds them back), then closed.

use super::plan::{Fresh, NewInput, Plan, Step};
use super::{input_token, output_token, Broker};
use crate::config::Config;
use crate::input::Input;
use crate::output::Output;

impl Broker {
    /// Makes the running state what `plan` says.
    pub(super) fn commit(&mut self, plan: Plan) {
        let Plan {
            config,
            inputs,
            outputs,
            retire,
            remove,
            chmod,
            group,
            changes: _,
        } = plan;
        for (name, mode) in chmod {
            if let Err(e) = self.world.dir.set_owner_and_mode(&name, mode, group) {
                log::error!("{e}");
            }
        }
        let keys = self.commit_outputs(&config, outputs);
        self.retire_inputs(retire);
        self.remove_outputs(remove);
        self.commit_inputs(&config, inputs, &keys);
        self.fanout.index_timers();
        self.index_mirrors();
        if self.world.pipe_bytes != config.pipe_bytes {
            self.world.pipes = std::rc::Rc::new(crate::world::PipeBudget::new(config.pipe_bytes));
        }
        self.world.pipe_bytes = config.pipe_bytes;
        self.metrics.set_path(config.metrics_file.clone());
        let largest = config.pipe_bytes.unwrap_or(self.world.pipes.max());
        self.buf.configure(largest, config.max_line_bytes);
        self.config = config;
    }

    /// Applies the output steps; returns the outputs' keys in config order.
    fn commit_outputs(&mut self, config: &Config, steps: Vec<Step<Fresh>>) -> Vec<usize> {
        self.fanout.reset_lanes();
        // A new `pipe_bytes` for the subscribers kept (fresh ones get it as
        // they attach).
        let resize = config
            .pipe_bytes
            .filter(|_| self.world.pipe_bytes != config.pipe_bytes);
        let mut keys = Vec::with_capacity(steps.len());
        for (step, oc) in steps.into_iter().zip(&config.outputs) {
            let outputs = self.fanout.outputs_mut();
            let fresh = !matches!(step, Step::Keep(_));
            let key = match step {
                Step::Keep(key) => {
                    outputs[key].reopen();
                    if let Some(bytes) = resize {
                        outputs[key].set_pipe_size(bytes);
                    }
                    key
                }
                Step::Renew(key, fresh) => {
                    let renewed = new_output(&oc.name, fresh, key);
                    let old = std::mem::replace(&mut outputs[key], renewed);
                    outputs[key].adopt(old, &self.world);
                    key
                }
                Step::New(fresh) => {
                    let entry = outputs.vacant_entry();
                    let key = entry.key();
                    entry.insert(new_output(&oc.name, fresh, key));
                    key
                }
            };
            let lane = self.fanout.lane(&oc.format, &oc.filter);
            let output = &mut self.fanout.outputs_mut()[key];
            output.reconfigure(oc, lane);
            if fresh {
                // A new target starts at once: a forward connects (so its
                // state and errors show before any line), a renewed sink
                // writes what it carried over.
                output.flush(&self.world);
            }
            keys.push(key);
        }
        keys
    }

    /// Marks the subscribers fed by exactly one input (retired ones
    /// included) that take its lines as they are (the zero-copy path).
    fn index_mirrors(&mut self) {
        let mut feeds = std::collections::HashMap::<usize, usize>::new();
        for (_, input) in &self.inputs {
            for &o in input.routes() {
                *feeds.entry(o).or_default() += 1;
            }
        }
        let feeds = |key| feeds.get(&key).copied().unwrap_or(0);
        let inputs = &self.inputs;
        let fed_by = |key: usize, pipe: u64| {
            (inputs.iter()).any(|(_, i)| i.has_pipe(pipe) && i.routes().contains(&key))
        };
        self.fanout.index_mirrors(&self.world, feeds, fed_by);
        let outputs = self.fanout.outputs();
        for (_, input) in &mut self.inputs {
            let mirrored = input.routes().iter().any(|&o| outputs[o].is_mirror());
            input.set_mirrored(mirrored);
        }
    }

    /// Outputs the config no longer has: closed (subscriber FIFOs removed,
    /// sinks flushed); retired inputs stop routing to them.
    fn remove_outputs(&mut self, keys: Vec<usize>) {
        for key in keys {
            let output = self.fanout.outputs_mut().remove(key);
            output.close(&self.world);
        }
        let outputs = self.fanout.outputs();
        for (_, input) in &mut self.inputs {
            if input.is_retired() {
                input.retain_routes(|o| outputs.contains(o));
            }
        }
    }

    /// Inputs the config no longer has: no new writer can open them, and
    /// what their pipes hold is still read (next turn, and on).
    fn retire_inputs(&mut self, keys: Vec<usize>) {
        for key in keys {
            let input = &mut self.inputs[key];
            input.retire();
            let _ = self.world.dir.remove_if_ours(input.name(), input.fifo());
            self.schedule.busy(key);
        }
    }

    /// Applies the input steps and routes every input to its outputs
    /// (`keys`: the outputs' keys in config order).
    fn commit_inputs(&mut self, config: &Config, steps: Vec<Step<NewInput>>, keys: &[usize]) {
        let mut routes = vec![Vec::new(); config.inputs.len()];
        for (o, oc) in config.outputs.iter().enumerate() {
            for &i in &oc.from {
                routes[i].push(keys[o]);
            }
        }
        let registry = self.world.poll.registry();
        for ((step, ic), routes) in steps.into_iter().zip(&config.inputs).zip(routes) {
            let key = match step {
                Step::Keep(key) => key,
                Step::Renew(key, NewInput { fifo, fd }) => {
                    self.inputs[key].replace_fifo(fifo, fd, registry);
                    self.schedule.busy(key);
                    key
                }
                Step::New(NewInput { fifo, fd }) => {
                    let entry = self.inputs.vacant_entry();
                    let key = entry.key();
                    entry.insert(Input::new(&ic.name, fifo, fd, input_token(key), registry));
                    key
                }
            };
            let input = &mut self.inputs[key];
            input.set_routes(routes);
            if let Some(bytes) = config.pipe_bytes {
                input.set_pipe_size(bytes);
            }
        }
    }
}

fn new_output(name: &str, fresh: Fresh, key: usize) -> Output {
    match fresh {
        Fresh::Fifo(fifo) => Output::subscriber(name, fifo, output_token(key)),
        Fresh::File(file) => Output::sink(name, file, output_token(key)),
        Fresh::Forward(forward) => Output::forward(forward, output_token(key)),
    }
}
