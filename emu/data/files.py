"""Reading audio files and checking them: voice clips and users' WAV pairs.

`load_voice` joins voice clips into one mono validation signal;
`load_pair` reads a user's recorded (input, target) pair and checks it,
each problem a `DataError` that names the fix (the input's test-signal
sidecar, `read_layout`, times it by its first blip), and `files_dataset` splits
that pair into train and val1 (a NAM reamp pair, read by NAM's layout, is
`emu.data.nam_layout`'s).

Free voice clips: Debian/Ubuntu's alsa-utils package ships short spoken
clips in /usr/share/sounds/alsa/ (Front_Center.wav, ...; Noise.wav is not a
voice, so the default glob leaves it out); see
`DEFAULT_VOICE_GLOB`.
"""

import glob
import json
import math
import os
import warnings

from absl import logging
import numpy as np
import scipy.signal
import soundfile

from emu.data import latency as latency_lib
from emu.data import pairs

# The spoken clips (Front_*, Rear_*, Side_*), not Noise.wav.
DEFAULT_VOICE_GLOB = '/usr/share/sounds/alsa/[FRS]*_*.wav'

VOICE_PEAK = 0.9
VOICE_GAP_SECONDS = 0.1
CLIP_LEVEL = 0.999
SILENCE_PEAK = 1e-6  # -120 dBFS: below one 16-bit step.


def read_audio(path):
  """(float32 [time, channels], sample rate) or DataError naming `path`."""
  if not os.path.isfile(path):
    raise pairs.DataError(f'{path}: file not found; check the path')
  try:
    audio, rate = soundfile.read(path, dtype='float32', always_2d=True)
  except (RuntimeError, soundfile.SoundFileError) as err:
    raise pairs.DataError(
        f'{path}: cannot read it as audio ({err}); soundfile reads WAV, '
        'FLAC, OGG and AIFF: convert it first, e.g. ffmpeg -i in.mp3 '
        'out.wav') from err
  return audio, rate


def load_voice(paths, sample_rate=44100):
  """Loads voice clips as one mono signal for validation.

  Each file is mixed to mono, resampled to `sample_rate` with
  scipy.signal.resample_poly if its rate differs (logged), peak-normalised
  to 0.9, and the clips are joined with 0.1 s of silence between them.

  Args:
    paths: a list of paths, or one path or glob pattern (e.g.
      `DEFAULT_VOICE_GLOB`, from Debian's alsa-utils package).
    sample_rate: Hz of the result.

  Returns:
    numpy float32 [time].

  Raises:
    DataError: no file matches, a file is missing, unreadable or silent.
  """
  if isinstance(paths, (str, os.PathLike)):
    pattern = os.fspath(paths)
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [
        pattern]
  else:
    pattern = None
  if not paths and pattern:
    raise pairs.DataError(
        f'no files match {pattern}; pass your own WAV paths, or install '
        "Debian's alsa-utils for /usr/share/sounds/alsa/*.wav")
  if not paths:
    raise pairs.DataError('no voice files given; pass a list of WAV paths')
  gap = np.zeros(int(round(VOICE_GAP_SECONDS * sample_rate)), np.float32)
  clips = []
  for path in paths:
    audio, rate = read_audio(os.fspath(path))
    if audio.shape[1] > 1:
      logging.info('%s: mixing %d channels to mono', path, audio.shape[1])
    clip = audio.mean(axis=1)
    if rate != sample_rate:
      logging.info('%s: resampling %d Hz -> %d Hz', path, rate, sample_rate)
      g = math.gcd(rate, sample_rate)
      clip = scipy.signal.resample_poly(clip, sample_rate // g, rate // g)
    peak = np.max(np.abs(clip), initial=0.)
    if peak <= SILENCE_PEAK:
      raise pairs.DataError(f'{path} is silent (peak {peak:.1e}); pick '
                            'another clip')
    clips += [gap, (clip * (VOICE_PEAK / peak)).astype(np.float32)]
  return np.concatenate(clips[1:])


def _pick_channel(audio, path, channel):
  channels = audio.shape[1]
  if channels == 1 and channel in (None, 0):
    return audio[:, 0]
  if channel is None:
    raise pairs.DataError(
        f'{path} has {channels} channels; training reads one: pass '
        f'--channel=0..{channels - 1} (run.py; channel= in Python) or mix '
        f'it down (e.g. sox {path} mono.wav remix 1-{channels})')
  if not 0 <= channel < channels:
    raise pairs.DataError(
        f'--channel={channel} but {path} has {channels} channels: pass '
        f'--channel=0..{channels - 1}' if channels > 1 else
        f'--channel={channel} but {path} has 1 channel (mono): leave '
        '--channel out, or pass --channel=0')
  return audio[:, channel]


def read_mono(path, channel=None):
  """(float32 [time], sample rate) of one channel of `path`, or DataError.

  A mono file is read as it is; a multi-channel one needs `channel`.
  """
  audio, rate = read_audio(path)
  return _pick_channel(audio, path, channel), rate


def check_finite(audio, path, sample_rate):
  """DataError naming how many NaN/inf samples `path` has, and where."""
  bad = ~np.isfinite(audio)
  if bad.any():
    first = int(np.argmax(bad))
    if np.ndim(bad) > 1:
      first = int(np.argmax(bad.any(axis=1)))
    raise pairs.DataError(
        f'{path} has {int(bad.sum())} NaN/inf samples (first at sample '
        f'{first}, {first / sample_rate:.3f} s); re-render or repair it')


def check_samples(audio, path, sample_rate):
  """DataError for NaN/inf or a silent signal; warns for clipped samples."""
  check_finite(audio, path, sample_rate)
  peak = float(np.max(np.abs(audio), initial=0.))
  if peak <= SILENCE_PEAK:
    raise pairs.DataError(f'{path} is silent (peak {peak:.1e}); check that '
                          'the right file and channel were exported')
  clipped = int(np.sum(np.abs(audio) >= CLIP_LEVEL))
  if clipped:
    warnings.warn(
        f'{path}: {clipped} samples at or above {CLIP_LEVEL} of full scale '
        '(clipped?); a model will learn the clipping too', stacklevel=3)


# emu's test signal (`emu.capture.testsignal`) writes its layout beside its
# WAV: input.wav -> input.layout.json, this format.
LAYOUT_FORMAT = 'emu-testsignal'


def layout_path(wav_path):
  """The sidecar of a test-signal WAV: input.wav -> input.layout.json."""
  return os.path.splitext(wav_path)[0] + '.layout.json'


def read_layout(path):
  """The layout from a sidecar, or from a WAV's sidecar; None if absent."""
  if not path.endswith('.json'):
    path = layout_path(path)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    layout = json.load(f)
  if layout.get('format') != LAYOUT_FORMAT:
    raise ValueError(f'{path} is not an emu test-signal layout')
  return layout


def first_blip(x, sample_rate, layout):
  """The sample of the layout's first blip when `layout` (a test-signal
  layout dict, or None) fits x and x is silent before it, else None: the
  blip `emu.data.latency.find_latency` times a recording by."""
  if (not layout or not layout.get('blips') or
      layout.get('sample_rate') != sample_rate or
      layout.get('samples') != len(x)):
    return None
  blip = int(layout['blips'][0])
  quiet = np.max(np.abs(x[:blip]), initial=0.) <= SILENCE_PEAK
  return blip if 0 < blip < len(x) and quiet else None


def lag_refusal(target_path, why, max_latency_ms):
  """The one line refusing a pair whose lag cannot be found (`why`)."""
  return (f'{target_path}: its latency cannot be found ({why}; searched '
          f'+-{max_latency_ms:g} ms): pass a larger --max_latency_ms to '
          'search further, check that it is a recording of this input, or '
          'pass --max_latency_ms=0 to train on the pair as it is')


def load_pair(input_path, target_path, channel=None,
              compensate_latency=False, max_latency_ms=None):
  """Loads a user's recorded (input, target) pair and checks it.

  Nothing is resampled. Checks, each failing with a `DataError` that names
  the fix: both files readable, equal sample rates, one channel (or
  `channel`), equal lengths, no NaN/inf, not silent, and target aligned
  with input: its latency is found (`emu.data.latency.find_latency`: by
  the first blip when the input is emu's test signal with its sidecar,
  else by correlation), or the pair is refused naming --max_latency_ms;
  an input too narrowband to time (a sine) is logged and read as it is.
  Clipped samples (|x| >= 0.999) only warn (UserWarning).

  Args:
    input_path: WAV (or FLAC, ...) of the dry input.
    target_path: the effect's output, recorded from that input.
    channel: which channel to use from multi-channel files.
    compensate_latency: if the target lags (or leads), shift it to align
      and trim both to the common part instead of raising.
    max_latency_ms: largest latency the correlation searches, ms (None:
      `emu.data.latency.MAX_LATENCY_MS`); 0 skips the check.

  Returns:
    (Pair, sample_rate in Hz).
  """
  audio_in, rate_in = read_audio(input_path)
  audio_out, rate_out = read_audio(target_path)
  if rate_in != rate_out:
    raise pairs.DataError(
        f'{input_path} is at {rate_in} Hz but {target_path} is at '
        f'{rate_out} Hz; resample one of them (e.g. with '
        'scipy.signal.resample_poly or sox) so both match')
  x = _pick_channel(audio_in, input_path, channel)
  y = _pick_channel(audio_out, target_path, channel)
  if x.shape[0] != y.shape[0]:
    longer = target_path if y.shape[0] > x.shape[0] else input_path
    diff = abs(y.shape[0] - x.shape[0])
    raise pairs.DataError(
        f'{input_path} has {x.shape[0]} samples, {target_path} has '
        f'{y.shape[0]}: {longer} is longer by {diff} samples '
        f'({1000. * diff / rate_in:.1f} ms); trim it so both files start '
        'together and have the same length')
  check_samples(x, input_path, rate_in)
  check_samples(y, target_path, rate_in)
  if max_latency_ms is None:
    max_latency_ms = latency_lib.MAX_LATENCY_MS
  max_lag = min(int(round(max_latency_ms * rate_in / 1000.)), x.shape[0] - 1)
  latency, how, why = latency_lib.find_latency(
      x, y, max_lag, first_blip(x, rate_in, read_layout(input_path)))
  if why and why.startswith(latency_lib.NARROWBAND):
    logging.warning('%s: its latency cannot be measured (%s); reading the '
                    'pair as it is', target_path, why)
  elif why:
    raise pairs.DataError(lag_refusal(target_path, why, max_latency_ms))
  if latency and abs(latency) >= x.shape[0] // 2:
    raise pairs.DataError(
        f'{target_path} is {abs(latency)} samples off {input_path} (from '
        f'the {how}), over half its length: record the whole input, from '
        'its first sample, in one take')
  if latency:
    ms = 1000. * latency / rate_in
    if not compensate_latency:
      how = 'lags' if latency > 0 else 'leads'
      raise pairs.DataError(
          f'{target_path} {how} {input_path} by {abs(latency)} samples '
          f'({abs(ms):.2f} ms at {rate_in} Hz, from the {how}); pass '
          '--compensate_latency to run.py '
          '(compensate_latency=True in Python) to shift the target and '
          'trim both, or align the files in an editor')
    logging.info('%s: compensating %d samples (%.2f ms) of latency (from '
                 'the %s)', target_path, latency, ms, how)
    if latency > 0:
      x, y = x[:-latency], y[latency:]
    else:
      x, y = x[-latency:], y[:latency]
  return (pairs.Pair(np.ascontiguousarray(x), np.ascontiguousarray(y)),
          rate_in)


# Seconds of the recording before val1 that a model hears first (not
# scored): several release times of a compressor, the receptive field of
# any WaveNet here.
VAL1_CONTEXT_S = 1.0


# The share of a recording held out as val1: its end.
VAL_FRACTION = 0.1


def files_dataset(input_path, target_path, val_fraction=VAL_FRACTION,
                  val2_files=(), channel=None, compensate_latency=False,
                  max_latency_ms=None):
  """A Dataset from one recorded (input, target) pair, checked by `load_pair`.

  The last `val_fraction` of the recording becomes val1 (kept in time
  order, so no training audio leaks into it); the rest is train. val1
  starts VAL1_CONTEXT_S earlier as its `context`: the model plays that
  second of training audio first, unscored, so a model with memory is
  scored in the state the recording leaves it in, not from silence.

  Args:
    input_path, target_path: the dry input and the effect's output.
    val_fraction: share of the recording held out for val1, in (0, 1).
    val2_files: must be empty: a voice clip needs the effect's output too,
      which only the user's own recording can give.
    channel, compensate_latency, max_latency_ms: as for `load_pair`.

  Returns:
    A `Dataset` named 'files_<input file name>'.
  """
  if val2_files:
    raise pairs.DataError(
        'val2 voice clips need targets, and with your own files the effect '
        'is unknown: record the voice through the effect, append it to '
        'your input/target pair, and leave val2_files empty')
  if not 0. < val_fraction < 1.:
    raise ValueError(f'val_fraction must be in (0, 1), got {val_fraction}')
  pair, rate = load_pair(input_path, target_path, channel=channel,
                         compensate_latency=compensate_latency,
                         max_latency_ms=max_latency_ms)
  split = int(round(len(pair.input) * (1. - val_fraction)))
  train = pairs.Pair(pair.input[:split], pair.target[:split])
  context = min(split, int(round(VAL1_CONTEXT_S * rate)))
  val1 = pairs.Pair(pair.input[split - context:],
                    pair.target[split - context:], context=context)
  name = os.path.splitext(os.path.basename(input_path))[0]
  return pairs.Dataset(f'files_{name}', rate, train, val1)
