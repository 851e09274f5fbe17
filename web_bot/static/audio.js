// Audio for the chat page: one shared AudioContext, spoken-reply playback, the microphone streamed as PCM16
// (AudioWorklet) for push-to-talk and hands-free alike, and a level meter.
"use strict";

import { msg } from "./i18n.js";

const MIC_CONSTRAINTS = { audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true } };
// The worklet is fetched with the same cache-busting query as this module.
const WORKLET_URL = new URL("pcm-worklet.js" + new URL(import.meta.url).search, import.meta.url).href;

let context = null;

/** The page's AudioContext, created on first use. */
export function audioContext() {
  if (!context) {
    const Ctx = window.AudioContext || window.webkitAudioContext;
    context = new Ctx({ latencyHint: "interactive" });
  }
  return context;
}

/** Browsers only start sound after a user gesture: resume the context on each gesture until it runs. */
export function unlockOnGesture(onChange) {
  const unlock = () => {
    const ctx = audioContext();
    if (ctx.state === "running") return;
    ctx.resume().then(() => onChange && onChange(ctx.state), () => {});
  };
  for (const type of ["pointerdown", "keydown", "touchend"]) {
    document.addEventListener(type, unlock, { capture: true, passive: true });
  }
}

/** Why the microphone cannot be used, in plain words (a msg()), or null when it might work. */
export function micUnavailableReason() {
  if (!window.isSecureContext) return msg("mic.insecure");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return msg("mic.unsupported");
  return null;
}

/** A getUserMedia failure (or one of ours: NoMicrophone, NoWorklet) explained for people, as a msg(). */
export function micErrorText(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") {
    return msg("mic.blocked");
  }
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") {
    return msg("mic.not-found");
  }
  if (name === "NotReadableError" || name === "TrackStartError" || name === "AbortError") return msg("mic.busy");
  if (name === "NoWorklet") return msg("mic.no-worklet");
  // The browser's own words, which are all there is to say about an unexpected failure.
  return micUnavailableReason() || (err && err.message ? msg("mic.failed-because", { reason: err.message })
    : msg("mic.failed"));
}

/** An error micErrorText explains by its name alone. */
function failure(name) {
  return Object.assign(new Error(name), { name });
}

async function openMic() {
  if (micUnavailableReason()) throw failure("NoMicrophone");
  return navigator.mediaDevices.getUserMedia(MIC_CONSTRAINTS);
}

function release(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

/** Reports the loudness (0..1) of a stream on every animation frame while running. */
class LevelMeter {
  constructor(stream, onLevel) {
    const ctx = audioContext();
    this.source = ctx.createMediaStreamSource(stream);
    this.analyser = ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.source.connect(this.analyser);
    this.samples = new Float32Array(this.analyser.fftSize);
    this.onLevel = onLevel;
    this.frame = requestAnimationFrame(() => this.tick());
  }

  tick() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const x of this.samples) sum += x * x;
    const rms = Math.sqrt(sum / this.samples.length);
    const db = 20 * Math.log10(rms + 1e-9);
    this.onLevel(Math.min(1, Math.max(0, (db + 60) / 50)));
    this.frame = requestAnimationFrame(() => this.tick());
  }

  stop() {
    cancelAnimationFrame(this.frame);
    this.source.disconnect();
    this.onLevel(0);
  }
}

// The reply's volume while speech over it is checked (reply_paused): heard, but no longer talking over the user.
const DUCKED_GAIN = 0.25;

/** Plays a reply's sentences in order as their frames arrive, and stops at once when told. */
export class Player {
  constructor({ onSpeaking, onBlocked } = {}) {
    this.enabled = true;
    this.output = null; // a GainNode every sentence plays through, so the reply can be ducked
    this.sources = new Set();
    this.playhead = 0;
    this.epoch = 0;
    this.chain = Promise.resolve();
    this.expected = null;
    this.decoding = 0;
    this.onSpeaking = onSpeaking || (() => {});
    this.onBlocked = onBlocked || (() => {});
    this.stats = { frames: 0, received: 0, scheduled: 0, stopped: 0 };
  }

  /** Playing, or about to: a sentence is still being decoded. */
  get speaking() {
    return this.sources.size > 0 || this.decoding > 0;
  }

  /** An `audio` event announces the binary frame that follows it. */
  announce(event) {
    this.expected = event;
  }

  /** The binary frame: decode now, but schedule strictly in arrival (seq) order. */
  frame(data) {
    const header = this.expected;
    this.expected = null;
    this.stats.frames += 1;
    if (!header || !this.enabled) return;
    this.stats.received += 1;
    const ctx = audioContext();
    if (ctx.state !== "running") this.onBlocked();
    const epoch = this.epoch;
    const decoded = ctx.decodeAudioData(data).catch(() => null);
    this.decoding += 1;
    if (this.decoding === 1 && this.sources.size === 0) this.onSpeaking(true);
    this.chain = this.chain.then(async () => {
      const buffer = await decoded;
      if (epoch !== this.epoch) return; // stopped meanwhile
      this.decoding -= 1;
      if (buffer && this.enabled) this.schedule(buffer);
      else if (!this.speaking) this.onSpeaking(false);
    });
  }

  schedule(buffer) {
    const ctx = audioContext();
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.gainNode(ctx));
    const start = Math.max(ctx.currentTime + 0.03, this.playhead);
    source.start(start);
    this.playhead = start + buffer.duration;
    this.sources.add(source);
    this.stats.scheduled += 1;
    source.onended = () => {
      this.sources.delete(source);
      if (!this.speaking) this.onSpeaking(false);
    };
    this.onSpeaking(true);
  }

  gainNode(ctx) {
    if (!this.output) {
      this.output = ctx.createGain();
      this.output.connect(ctx.destination);
    }
    return this.output;
  }

  /** Quieter while the server checks whether speech over the reply is the user interrupting; back up after. */
  duck(on) {
    const ctx = audioContext();
    this.gainNode(ctx).gain.setTargetAtTime(on ? DUCKED_GAIN : 1, ctx.currentTime, 0.03);
    this.ducked = on;
  }

  /** Silence now: scheduled sentences stop and frames still decoding are dropped. */
  stop() {
    if (this.ducked) this.duck(false);
    this.epoch += 1;
    this.expected = null;
    const wasSpeaking = this.speaking;
    for (const source of this.sources) {
      source.onended = null;
      try {
        source.stop();
      } catch {
        // already stopped
      }
    }
    this.sources.clear();
    this.decoding = 0;
    this.playhead = 0;
    if (wasSpeaking) {
      this.stats.stopped += 1;
      this.onSpeaking(false);
    }
  }
}

/** The microphone as 16 kHz PCM16 in 20 ms chunks through an AudioWorklet, for hands-free and push-to-talk. */
export class LiveMic {
  constructor({ onChunk, onLevel } = {}) {
    this.onChunk = onChunk || (() => {});
    this.onLevel = onLevel || (() => {});
    this.stream = null;
    this.node = null;
    this.source = null;
    this.sink = null;
    this.meter = null;
    this.startedAt = 0; // when the microphone opened (performance.now())
  }

  static supported() {
    return typeof window.AudioWorkletNode === "function";
  }

  get active() {
    return this.node !== null;
  }

  async start(targetRate = 16000) {
    if (!LiveMic.supported()) throw failure("NoWorklet");
    const ctx = audioContext();
    if (ctx.state !== "running") await ctx.resume();
    if (!LiveMic.loaded) {
      await ctx.audioWorklet.addModule(WORKLET_URL);
      LiveMic.loaded = true;
    }
    const stream = await openMic();
    this.stream = stream;
    try {
      this.source = ctx.createMediaStreamSource(stream);
      this.node = new AudioWorkletNode(ctx, "pcm-downsampler", {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        outputChannelCount: [1],
        processorOptions: { targetRate, chunkMs: 20 },
      });
      this.node.port.onmessage = (event) => this.onChunk(event.data);
      // The worklet only runs while the graph pulls it: route it to the speakers through a muted gain.
      this.sink = ctx.createGain();
      this.sink.gain.value = 0;
      this.source.connect(this.node);
      this.node.connect(this.sink);
      this.sink.connect(ctx.destination);
      this.meter = new LevelMeter(stream, this.onLevel);
    } catch (err) {
      this.stop(); // the microphone is not left on for a graph that failed
      throw err;
    }
    this.startedAt = performance.now();
  }

  stop() {
    if (this.node) {
      this.node.port.onmessage = null;
      this.node.port.postMessage("stop");
      this.node.disconnect();
    }
    if (this.source) this.source.disconnect();
    if (this.sink) this.sink.disconnect();
    if (this.meter) this.meter.stop();
    release(this.stream);
    this.node = this.source = this.sink = this.meter = this.stream = null;
  }
}
LiveMic.loaded = false;
