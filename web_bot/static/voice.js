// Talking to the bot: the microphone button (hold to talk, tap to toggle, or hold Space) and hands-free mode, both
// streaming the microphone as PCM16 to the server, which hears and transcribes it as it comes (so a push-to-talk
// reply starts at the release, not after an upload); and the panel that shows what is going on.
"use strict";

import { LiveMic, micErrorText, micUnavailableReason } from "./audio.js";
import { msg, resolve, t } from "./i18n.js";

const HOLD_MS = 300; // a press shorter than this is a tap: it starts recording, and the next tap sends
// A press is a slip until it lasts this long: its audio waits here till then, because audio streamed to the server
// is answered (the protocol has no way to take it back), and a slip must send nothing.
const MIN_RECORDING_MS = 400;
const MAX_RECORDING_MS = 120000;
const LIVE_RATE = 16000;
// What the panel says in each hands-free state: [words, hint] (keys of static/i18n/*.json).
const LIVE_TEXT = {
  starting: ["mic.starting", null],
  offline: ["live.offline", "live.offline-hint"],
  listening: ["live.listening", "live.listening-hint"],
  speaking: ["live.speaking", null],
  thinking: ["live.thinking", null],
  bot: ["live.bot", "live.bot-hint"],
};
const RECORD_HINT = { hold: "voice.hold-hint", tap: "voice.tap-hint", key: "voice.key-hint" };

export class Voice {
  /**
   * @param ui  {mic, handsFree, panel, panelText, panelHint, panelTime, panelStop}
   * @param player  the spoken-reply Player (stopped when the user starts talking)
   * @param connection  the chat socket
   * @param notice  where problems are explained
   * @param unavailable  () => why speech input cannot be used right now (a string or a msg()), or null
   * @param onChange  () => the hands-free switch changed
   */
  constructor({ ui, player, connection, notice, unavailable, onChange }) {
    Object.assign(this, { ui, player, connection, notice, unavailable, onChange });
    const onLevel = (level) => this.showLevel(level);
    // One microphone each, so a press and hands-free never share (or stop) each other's half-opened stream.
    this.pressMic = new LiveMic({ onChunk: (pcm) => this.pressAudio(pcm), onLevel });
    this.liveMic = new LiveMic({ onChunk: (pcm) => this.sendChunk(pcm), onLevel });
    this.mode = null; // how the push-to-talk press was started: "hold" | "tap" | "key"
    this.starting = false;
    this.stopWanted = null; // "send" or "cancel": the press ended while its microphone was opening
    this.held = null; // the press's audio while it may still be a slip; null once it streams
    this.ended = null; // a push-to-talk stream just ended ("released" | "cancelled"), until its turn begins
    this.pressAt = 0;
    this.pressStops = false;
    this.timer = null;
    this.live = false; // hands-free is on
    this.liveStarting = false;
    this.stream = null; // the mode audio_start opened a stream with on this socket: "hands_free" | "push_to_talk"
    this.userSpeaking = false;
    this.thinking = false;
    this.states = []; // every hands-free state shown, in order
    this.flashing = null;
    this.bind();
  }

  get streaming() {
    return this.stream !== null;
  }

  get recording() {
    return this.mode !== null && (this.pressMic.active || this.starting);
  }

  /** A recorded file may go over the socket only outside a PCM stream (it would be read as PCM). */
  get canSendFile() {
    return !this.streaming;
  }

  // ---- push-to-talk: the same PCM stream as hands-free, but the release ends the turn -----------------------

  async startRecording(mode) {
    if (this.recording) return;
    if (this.live) {
      this.notice.show(msg("voice.hands-free-busy"), { timeout: 5000 });
      return;
    }
    const problem = this.unavailable() || micUnavailableReason() ||
      (LiveMic.supported() ? null : msg("mic.no-worklet"));
    if (problem) {
      this.notice.show(problem);
      return;
    }
    if (!this.connection.open) {
      // Speech is heard as it streams: there is nothing to keep for later, unlike a typed message.
      this.notice.show(msg("voice.offline"), { timeout: 8000 });
      return;
    }
    this.mode = mode;
    this.starting = true;
    this.stopWanted = null;
    this.ended = null;
    this.player.stop(); // nobody listens while talking
    this.refresh();
    try {
      await this.pressMic.start(LIVE_RATE);
    } catch (err) {
      this.starting = false;
      this.mode = null;
      this.refresh();
      this.notice.show(micErrorText(err));
      return;
    }
    this.starting = false;
    this.held = [];
    this.notice.hide("mic");
    this.refresh();
    this.tick();
    if (this.stopWanted) this.stopRecording({ cancel: this.stopWanted === "cancel" });
    else if (!this.connection.open) this.lost(); // the socket went while the microphone opened
  }

  tick() {
    clearTimeout(this.timer);
    if (!this.pressMic.active) return;
    const ms = performance.now() - this.pressMic.startedAt;
    const s = Math.floor(ms / 1000);
    this.ui.panelTime.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    if (ms >= MAX_RECORDING_MS) this.stopRecording();
    else this.timer = setTimeout(() => this.tick(), 250);
  }

  /** 20 ms of the press's audio: streamed, or held while the press may still be a slip. */
  pressAudio(pcm) {
    if (this.held === null) {
      if (this.stream === "push_to_talk" && this.connection.open) this.connection.send(pcm);
      return;
    }
    this.held.push(pcm);
    if (performance.now() - this.pressMic.startedAt >= MIN_RECORDING_MS && !this.streamHeld()) this.lost();
  }

  /** The press is meant: open a push-to-talk stream with the audio held so far; false if the socket is gone. */
  streamHeld() {
    const held = this.held;
    this.held = null;
    if (!this.connection.open || this.streaming) return false;
    this.connection.send({ type: "audio_start", format: "pcm16", sample_rate: LIVE_RATE, mode: "push_to_talk" });
    this.stream = "push_to_talk";
    for (const pcm of held) this.connection.send(pcm);
    return true;
  }

  /** Released (sent: the server answers what it heard) or cancelled (audio_cancel: the server forgets it). A
   * slip, or a cancel before the press was long enough, sends nothing at all. */
  stopRecording({ cancel = false } = {}) {
    if (this.starting) {
      this.stopWanted = cancel ? "cancel" : "send"; // let go before the microphone even opened
      return;
    }
    if (this.mode === null || !this.pressMic.active) return;
    const ms = performance.now() - this.pressMic.startedAt;
    this.mode = null;
    clearTimeout(this.timer);
    if (this.held !== null && !cancel) {
      if (ms < MIN_RECORDING_MS) {
        this.notice.show(msg("voice.too-short"), { timeout: 6000 });
      } else if (!this.held.length) {
        this.notice.show(msg("voice.nothing-recorded"), { timeout: 6000 });
      } else if (!this.streamHeld()) {
        this.notice.show(msg("voice.offline"), { timeout: 8000 });
      }
    }
    this.held = null;
    if (this.stream === "push_to_talk") {
      this.stream = null;
      // First: the turn ends (or is forgotten) now, before the microphone closes.
      this.connection.send({ type: cancel ? "audio_cancel" : "audio_stop" });
      this.ended = cancel ? "cancelled" : "released";
    }
    this.pressMic.stop();
    this.refresh();
  }

  /** The socket went during a press: its audio cannot reach the server (nor wait for it), so the press ends. */
  lost() {
    this.stopRecording({ cancel: true });
    this.notice.show(msg("voice.offline"), { timeout: 8000 });
  }

  /** The server heard no speech at all in a stream: true if it was a press's (then said here, and not at all
   * after a cancel), false if it is someone else's to explain. */
  noSpeech() {
    const ended = this.ended;
    this.ended = null;
    if (ended === "released") this.notice.show(msg("error.no-speech"), { timeout: 6000 });
    return ended !== null;
  }

  // ---- hands-free --------------------------------------------------------------------------------------------

  async startLive() {
    const problem = this.unavailable() || micUnavailableReason();
    if (problem) {
      this.notice.show(problem);
      return;
    }
    if (this.recording) this.stopRecording({ cancel: true }); // one stream at a time
    this.live = true;
    this.liveStarting = true;
    this.changed();
    try {
      await this.liveMic.start(LIVE_RATE);
    } catch (err) {
      this.live = false;
      this.liveStarting = false;
      this.changed();
      this.notice.show(micErrorText(err));
      return;
    }
    this.liveStarting = false;
    if (!this.live) {
      this.liveMic.stop(); // switched off while the microphone was starting
      return;
    }
    this.notice.hide("mic");
    this.openStream();
    this.refresh();
  }

  stopLive() {
    if (this.stream === "hands_free") {
      this.stream = null;
      this.connection.send({ type: "audio_stop" });
    }
    this.liveMic.stop();
    this.live = false;
    this.liveStarting = false;
    this.userSpeaking = false;
    this.thinking = false;
    this.changed();
  }

  /** A fresh socket (its welcome arrived): hands-free, if on, opens its stream on it. */
  openStream() {
    this.userSpeaking = false;
    this.thinking = false;
    if (this.live && !this.liveStarting && !this.streaming && this.connection.open) {
      this.connection.send({ type: "audio_start", format: "pcm16", sample_rate: LIVE_RATE, mode: "hands_free" });
      this.stream = "hands_free";
    }
    this.refresh();
  }

  /** The socket is gone, and the server's end of the stream with it (a press in progress ends). */
  socketClosed() {
    this.stream = null;
    if (this.mode !== null && !this.starting) this.lost();
    this.refresh();
  }

  /** Hands-free audio. */
  sendChunk(pcm) {
    // Only inside audio_start … audio_stop: a stray binary frame would be taken as a whole recording.
    if (this.stream === "hands_free" && this.connection.open) this.connection.send(pcm);
  }

  // ---- what the server says about the conversation ------------------------------------------------------------

  speechStarted() {
    this.userSpeaking = true;
    if (this.player.speaking) this.player.stop(); // talking over the bot silences it now, not a round trip later
    this.refresh();
  }

  speechStopped() {
    this.ended = null; // a press's turn has begun: nothing more to explain about it
    this.userSpeaking = false;
    this.thinking = true;
    this.refresh();
  }

  /** A turn is under way (true) or over (false). */
  setThinking(on) {
    this.thinking = on;
    this.refresh();
  }

  /** A hands-free utterance came to nothing (no words in it). */
  missed() {
    this.thinking = false;
    this.flash(msg("voice.missed"));
  }

  liveState() {
    if (this.liveStarting) return "starting";
    if (!this.streaming) return "offline";
    if (this.userSpeaking) return "speaking";
    if (this.player.speaking) return "bot";
    if (this.thinking) return "thinking";
    return "listening";
  }

  // ---- the panel ---------------------------------------------------------------------------------------------

  changed() {
    this.refresh();
    this.onChange();
  }

  refresh() {
    const ui = this.ui;
    const recording = this.recording;
    let mode = null;
    if (recording) {
      mode = "recording";
      ui.panelText.textContent = t(this.starting ? "mic.starting" : "voice.recording");
      ui.panelHint.textContent = RECORD_HINT[this.mode] ? t(RECORD_HINT[this.mode]) : "";
      ui.panelStop.textContent = t("voice.cancel");
      ui.panelStop.setAttribute("aria-label", t("voice.cancel-name"));
    } else if (this.live) {
      const live = this.liveState();
      mode = "live-" + live;
      if (this.states[this.states.length - 1] !== live) this.states.push(live);
      const [words, hint] = this.flashing ? [this.flashText, null] : LIVE_TEXT[live].map((key) => key && msg(key));
      ui.panelText.textContent = resolve(words);
      ui.panelHint.textContent = resolve(hint);
      ui.panelTime.textContent = "";
      ui.panelStop.textContent = t("voice.stop");
      ui.panelStop.setAttribute("aria-label", t("voice.stop-name"));
    }
    ui.panel.hidden = mode === null;
    ui.panel.dataset.state = mode || "idle";
    ui.mic.setAttribute("aria-pressed", String(recording));
    ui.mic.dataset.state = recording ? "recording" : "idle";
    ui.handsFree.dataset.state = this.live ? this.liveState() : "off";
  }

  /** Shows `text` (a string or a msg()) in place of the state's words for a moment. */
  flash(text) {
    clearTimeout(this.flashing);
    this.flashText = text;
    this.ui.panelText.textContent = resolve(text);
    this.ui.panelHint.textContent = "";
    this.flashing = setTimeout(() => {
      this.flashing = null;
      this.refresh();
    }, 2500);
  }

  showLevel(level) {
    const value = level.toFixed(3);
    this.ui.panel.style.setProperty("--level", value);
    this.ui.mic.style.setProperty("--level", value);
    if (level > Number(this.ui.panel.dataset.peak || 0)) this.ui.panel.dataset.peak = value;
  }

  // ---- controls ----------------------------------------------------------------------------------------------

  /** True (and explained) when the button is switched off. */
  refused(button) {
    if (button.getAttribute("aria-disabled") !== "true") return false;
    this.notice.show(() => button.title || t("control.unavailable"), { timeout: 5000 }); // the title follows a switch
    return true;
  }

  bind() {
    const { mic, handsFree, panelStop } = this.ui;
    // Hold to talk; a short tap starts and the next one sends. Pointer events cover mouse, pen and touch.
    mic.addEventListener("pointerdown", (event) => {
      if (event.button !== 0 || this.refused(mic)) return;
      event.preventDefault();
      mic.setPointerCapture?.(event.pointerId);
      if (this.recording) {
        this.pressStops = true;
        this.stopRecording();
        return;
      }
      this.pressAt = performance.now();
      this.startRecording("hold");
    });
    mic.addEventListener("pointerup", () => {
      if (this.pressStops) {
        this.pressStops = false;
      } else if (this.mode === "hold") {
        if (performance.now() - this.pressAt < HOLD_MS) {
          this.mode = "tap";
          this.refresh();
        } else {
          this.stopRecording();
        }
      }
    });
    mic.addEventListener("pointercancel", () => {
      if (this.mode === "hold") this.stopRecording({ cancel: true });
    });
    mic.addEventListener("contextmenu", (event) => event.preventDefault()); // a long press on a phone
    mic.addEventListener("click", (event) => {
      if (event.detail !== 0 || this.refused(mic)) return; // detail 0: Enter, not a pointer
      if (this.recording) this.stopRecording();
      else this.startRecording("tap");
    });

    // Hold Space to talk, unless typing, or another control has the focus (Space is that control's key).
    window.addEventListener("keydown", (event) => {
      if (event.code !== "Space" || event.ctrlKey || event.altKey || event.metaKey) return;
      const target = event.target instanceof Element ? event.target : null;
      if (target && target !== mic && target.closest("textarea, input, select, [contenteditable], button, a, summary, audio")) {
        return;
      }
      // Not while a dialog is open, nor while the chat is not on screen (signing in).
      if (target?.closest("dialog") || document.body.dataset.auth !== "in") return;
      event.preventDefault();
      if (event.repeat || this.refused(mic)) return;
      if (this.recording) {
        if (this.mode === "tap") this.stopRecording();
        return;
      }
      this.startRecording("key");
    });
    window.addEventListener("keyup", (event) => {
      if (event.code !== "Space") return;
      if (event.target === mic) event.preventDefault(); // no click on release
      if (this.mode === "key") this.stopRecording();
    });
    window.addEventListener("blur", () => {
      if (this.mode === "key" || this.mode === "hold") this.stopRecording();
    });

    panelStop.addEventListener("click", () => {
      if (this.recording) this.stopRecording({ cancel: true });
      else if (this.live) this.stopLive();
    });
    handsFree.addEventListener("click", () => {
      if (this.live) this.stopLive();
      else if (!this.refused(handsFree)) this.startLive();
    });
  }
}
