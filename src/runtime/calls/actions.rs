//! Carrying out what a call's session asks for: SIP to send, prompts to play, transcriptions,
//! the callee's media, the bridge, and the finished call's record.

use super::record::{call_record, log_finished};
use super::resources::synthesize;
use super::{CallEvent, CallManager};
use crate::call::{AsrFailure, CallAction, CallInput, Leg, Prompt};
use crate::media::relay::{MediaLeg, RtpRelay};
use crate::media::rtp::RtpSender;
use crate::runtime::media_relay::RelayTask;
use crate::sip::proxy::Proxy;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, info_span, warn};

impl CallManager {
    /// Carry out what a call asked for.
    pub(super) async fn pump(&mut self, proxy: &mut Proxy, id: u64) {
        let now = Instant::now();
        loop {
            let Some(c) = self.calls.get_mut(&id) else {
                return;
            };
            let Some(action) = c.call.poll_action() else {
                break;
            };
            match action {
                CallAction::Send { to, bytes } => proxy.send_raw(to, bytes),
                CallAction::PlayPrompt { leg, prompt } => match self
                    .res
                    .prompts
                    .get(&c.language)
                    .and_then(|p| p.pcm(&prompt))
                {
                    Some(pcm) => {
                        let media = match leg {
                            Leg::A => c.a.as_ref(),
                            Leg::B => c.b.as_ref(),
                        };
                        match media {
                            Some(m) => c.players.push((leg, m.prompt_player(pcm, now))),
                            None => c.call.handle_input(now, CallInput::PromptFinished(leg)),
                        }
                    }
                    None => {
                        let Prompt::Warning(text) = prompt else {
                            continue;
                        };
                        let events = self.events.clone();
                        let voice = crate::call::language::voice(&c.language);
                        tokio::task::spawn_blocking(move || {
                            let pcm = synthesize(&text, voice).map(Arc::from);
                            let _ = events.blocking_send(CallEvent::Warning { call: id, pcm });
                        });
                    }
                },
                CallAction::StopPrompt(leg) => c.players.retain(|(l, _)| *l != leg),
                CallAction::Transcribe {
                    job,
                    kind,
                    pcm,
                    deadline,
                } => {
                    if let Some(failure) = self.transcribe(id, job, kind, pcm, deadline) {
                        if failure != AsrFailure::Skipped {
                            info_span!("call", call = id).in_scope(
                                || warn!(error = %failure, kind = ?kind, "transcription refused"),
                            );
                        }
                        let result = Err(failure);
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.call
                                .handle_input(now, CallInput::Transcribed { job, result });
                        }
                    }
                }
                CallAction::CancelTranscription(job) => {
                    if let Some(t) = c.jobs.remove(&job) {
                        t.cancel();
                    }
                }
                CallAction::Ringback(on) => {
                    c.ringback = match (on, &self.res.ringback, c.a.as_ref()) {
                        (true, Some(pcm), Some(a)) => Some(a.prompt_player(pcm.clone(), now)),
                        _ => None,
                    };
                }
                CallAction::CalleeMedia(negotiated) => match negotiated {
                    Some(n) => {
                        let sender = RtpSender::from_seed(id ^ 0x5bd1_e995);
                        let pbx = self.res.call.upstream.addr.ip();
                        c.b = Some(MediaLeg::new(now, n, sender).with_signalling_source(pbx));
                    }
                    None => debug!(call = id, "callee answered without usable SDP"),
                },
                CallAction::Bridge => {
                    c.ringback = None;
                    c.players.clear();
                    if let (Some(a), Some(b), Some([sa, sb])) =
                        (c.a.take(), c.b.take(), c.sockets.take())
                    {
                        // The relay task reads the sockets from now on.
                        for r in c.readers.drain(..) {
                            r.abort();
                        }
                        let relay = RtpRelay::new(a, b);
                        c.relay = Some(RelayTask::spawn(relay, sa, sb, id, self.events.clone()));
                    }
                }
                CallAction::ReleaseMedia => c.release_media(&mut self.res.ports),
                CallAction::Finished(record) => {
                    c.release_media(&mut self.res.ports);
                    c.finished = true;
                    for (_, t) in c.jobs.drain() {
                        t.cancel();
                    }
                    log_finished(id, &record);
                    if let Some(f) = &self.res.on_finished {
                        f(call_record(
                            &record,
                            &c.withheld_reason,
                            c.started_at,
                            Some(c.language.as_str()),
                        ));
                    }
                }
            }
        }
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        // Leg B's Call-ID becomes known when the callee is called.
        let (a_id, b_id) = c.call.call_ids();
        if let Some(b) = b_id {
            if c.leg_b_id.as_deref() != Some(b.as_str()) {
                proxy.attach_call(&b, true, id);
                c.leg_b_id = Some(b);
            }
        }
        if c.finished && c.call.is_done() {
            proxy.detach_call(&a_id);
            if let Some(b) = c.leg_b_id.take() {
                proxy.detach_call(&b);
            }
            self.calls.remove(&id);
        }
    }
}
