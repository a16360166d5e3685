"""emu.capture.audition: candidates (settings or family flagfiles) halved
round by round, the best one continued in the run folder, an interrupted
audition resumed, the two-worker path, and a clear error for every
malformed --audition."""

import json
import os
import shutil

import numpy as np
import pytest

from emu import apply as apply_lib
from emu.capture import audition
from emu.capture import audition_workers
from emu import cli
from emu import config as config_lib
from emu import pipeline
from emu import train
from emu import workdir
from emu.plugins import playable


def _config(**changes):
  base = dict(
      model="lru", model_kwargs={"state_size": 1, "num_layers": 1},
      train_seconds=1.5, val1_seconds=0.5, segment_length=4096, warmup=1024,
      batch_size=4, learning_rate=0.1, max_epochs=3, stream_blocks=(),
      # One epoch a round: any epoch takes longer than a microsecond.
      audition="learning_rate=0|0.1|0.03|0.001", audition_s=1e-6,
      audition_workers=1)
  base.update(changes)
  return config_lib.Config(**base)


def _rows(folder):
  with open(os.path.join(folder, workdir.METRICS)) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def auditioned(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("audition"))
  return path, pipeline.run(_config(), path)


def test_the_better_half_continues_until_one_is_chosen_and_continued(
    auditioned):
  path, report = auditioned
  labels = ["learning_rate=0.0", "learning_rate=0.1", "learning_rate=0.03",
            "learning_rate=0.001"]
  folders = {label: os.path.join(path, workdir.AUDITION, label)
             for label in labels}
  rows = {label: _rows(folder) for label, folder in folders.items()}
  first = {label: rows[label][0]["val1_esr"] for label in labels}
  choice = workdir.read_json(path, workdir.AUDITION_CHOICE)
  # Round 1: all four one epoch (audition_s); the better two go on.
  one, two = choice["rounds"]
  assert one["val1_esr"] == pytest.approx(first)
  kept = sorted(labels, key=first.get)[:2]
  assert one["continue"] == kept and "learning_rate=0.0" not in kept
  # Round 2: twice the seconds (one more epoch each); the better one wins.
  assert (one["seconds"], two["seconds"]) == (1e-6, 2e-6)
  assert sorted(two["val1_esr"]) == sorted(kept)
  for label in labels:
    assert len(rows[label]) == (2 if label in kept else 1), label
  best = {label: min(r["val1_esr"] for r in rows[label]) for label in kept}
  assert two["val1_esr"] == pytest.approx(best)
  winner = min(kept, key=best.get)
  assert two["continue"] == [winner] and choice["chosen"] == winner
  # The run folder is the winner's run, trained on (not restarted).
  run_rows = _rows(path)
  assert len(run_rows) == 3 and report["epochs"] == 3
  assert run_rows[:2] == rows[winner]
  chosen = workdir.read_config(path)
  assert chosen.audition == "" and f"learning_rate={chosen.learning_rate}" \
      == winner
  assert report["audition"]["chosen"] == winner
  assert report["audition"]["rounds"] == 2
  # One worker: the wall clock, measured, holds every candidate's seconds.
  assert choice["workers"] == 1
  assert choice["wall_seconds"] >= sum(choice["seconds_trained"].values())
  # Training time counts the candidates not chosen (each run's clock also
  # holds its last checkpoint's write, after its last row).
  others = sum(rows[label][-1]["elapsed_s"] for label in labels
               if label != winner)
  assert (run_rows[-1]["elapsed_s"] + others <= report["train_seconds"]
          <= run_rows[-1]["elapsed_s"] + others + 10.)
  assert f"audition chose {winner}" in pipeline.summary_line(path, report)


def test_an_interrupted_audition_resumes_its_round(auditioned, tmp_path):
  # Given the folder as it was when round 2 was under way (round 1
  # recorded, the winner not yet adopted)
  path, _ = auditioned
  copy = str(tmp_path / "copy")
  shutil.copytree(path, copy)
  for name in os.listdir(copy):  # the run folder's own files, not adopted
    if name not in (workdir.AUDITION, workdir.AUDITION_CHOICE):
      workdir._remove(os.path.join(copy, name))  # pylint: disable=protected-access
  done = workdir.read_json(path, workdir.AUDITION_CHOICE)
  record = {k: v for k, v in done.items()
            if k not in ("chosen", "config_json", "val1_esr",
                         "seconds_trained", "wall_seconds")}
  record["rounds"] = done["rounds"][:1]
  workdir.write_json(copy, workdir.AUDITION_CHOICE, record, indent=2)
  # When the same command runs again
  chosen = audition.choose(_config(), copy)
  # Then round 1 is not retrained, round 2's runs (already at their
  # seconds) train no more, and the same candidate is chosen
  after = workdir.read_json(copy, workdir.AUDITION_CHOICE)
  assert after["rounds"][0] == done["rounds"][0]
  # (a resumed run's clock restarts from its last checkpoint's, which
  # leaves out that checkpoint's own write: seconds may differ a little)
  for key in ("val1_esr", "continue", "seconds"):
    assert after["rounds"][1][key] == done["rounds"][1][key]
  assert after["chosen"] == done["chosen"]
  for label in done["rounds"][0]["val1_esr"]:
    assert (_rows(os.path.join(copy, workdir.AUDITION, label))
            == _rows(os.path.join(path, workdir.AUDITION, label)))
  assert chosen == workdir.read_config(copy)


@pytest.mark.parametrize("overwrite", [False, True])
def test_the_same_command_again_resumes_the_choice(auditioned, overwrite):
  # --overwrite replaces only a run of other settings: the finished model
  # is not put back to its audition state.
  path, _ = auditioned
  before = workdir.read_json(path, workdir.AUDITION_CHOICE)
  loser = os.path.join(path, workdir.AUDITION, "learning_rate=0.0")
  rows = _rows(path)
  report = pipeline.run(_config(), path, overwrite=overwrite)
  assert _rows(path) == rows  # resumed at its end: nothing retrained
  assert workdir.read_json(path, workdir.AUDITION_CHOICE) == before
  assert len(_rows(loser)) == 1  # not auditioned again
  assert report["epochs"] == 3


def test_an_audition_recorded_before_a_field_was_added_resumes(auditioned,
                                                             tmp_path):
  # Given a finished audition whose record of the command predates a
  # Config field (plugin_seconds)
  path, _ = auditioned
  copy = str(tmp_path / "copy")
  shutil.copytree(path, copy)
  record = workdir.read_json(copy, workdir.AUDITION_CHOICE)
  del record["base"]["plugin_seconds"]
  workdir.write_json(copy, workdir.AUDITION_CHOICE, record, indent=2)
  # Then the same command (the field at its default) resumes its choice
  assert audition.resumed(_config(), copy) == workdir.read_config(copy)
  assert audition.resumed(_config(plugin_seconds=1.0), copy) is None


def test_a_run_of_other_settings_in_that_folder_is_refused(auditioned):
  path, _ = auditioned
  with pytest.raises(workdir.WorkdirConflict, match="audition"):
    pipeline.run(_config(audition="learning_rate=0.1|0.2"), path)


def test_an_unfinished_audition_of_other_settings_is_refused(tmp_path):
  path = str(tmp_path / "run")
  os.makedirs(path)
  workdir.write_json(path, workdir.AUDITION_CHOICE, {
      "base": {"audition": "other"}, "rounds": []})
  with pytest.raises(workdir.WorkdirConflict, match="resume it"):
    audition.choose(_config(), path)


def test_rounds_halve_the_candidates_and_double_the_seconds():
  assert audition.rounds(5, 40.) == [(5, 40.), (2, 80.)]
  assert audition.rounds(4, 1.) == [(4, 1.), (2, 2.)]
  assert audition.rounds(2, 1.) == [(2, 1.)]
  assert audition.rounds(8, 1.) == [(8, 1.), (4, 2.), (2, 4.)]
  # Wall clock: two workers take a round of five in three turns.
  assert audition.planned_wall_s(5, 40., 2) == 3 * 40 + 80
  assert audition.planned_wall_s(5, 40., 1) == 5 * 40 + 2 * 80
  assert audition.planned_wall_s(5, 40., 8) == 40 + 80
  runs = audition.candidates(_config(time_budget_s=100., audition_s=10.,
                                     audition="dynamics_width=0|8|16",
                                     model="wiener", model_kwargs={}))
  assert [label for label, _ in runs] == [
      "dynamics_width=0", "dynamics_width=8", "dynamics_width=16"]
  for (_, cfg), width in zip(runs, (0, 8, 16)):
    assert cfg.model_kwargs["dynamics_width"] == width
    # the winner's budget is set from the audition's wall seconds
    assert cfg.time_budget_s == 100. and cfg.audition == ""


def _family(tmp_path, name, text):
  (tmp_path / name).write_text(text)
  return f"@{tmp_path / name}"


def test_a_family_changes_the_model_and_its_training_together(tmp_path):
  wave = _family(tmp_path, "wave.flags",
                 "# a family: what differs\n--model=wavenet\n--channels=4\n"
                 "--dilations=1,2\n--segment_length=2048\n--warmup=512\n"
                 "--batch_size=2\n--learning_rate=4e-3\n")
  same = _family(tmp_path, "same.flags", "--state_size=2\n")
  runs = dict(audition.candidates(_config(audition=f"{wave}|{same}|"
                                          "learning_rate=0.5")))
  assert list(runs) == ["wave", "same", "learning_rate=0.5"]
  wave_cfg = runs["wave"]
  assert wave_cfg.model == "wavenet"  # the lru's settings dropped
  assert wave_cfg.model_kwargs == {"channels": 4, "dilations": (1, 2)}
  assert (wave_cfg.segment_length, wave_cfg.warmup, wave_cfg.batch_size,
          wave_cfg.learning_rate) == (2048, 512, 2, 4e-3)
  assert wave_cfg.train_seconds == 1.5  # the recipe's data
  # The same model: the family's hyperparameters on top of the recipe's.
  assert runs["same"].model_kwargs == {"state_size": 2, "num_layers": 1}


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("--hiden_size=4\n", "hiden_size"),
    ("--learning_rate=fast\n", "learning_rate"),
    ("--model=lstm\n--channels=4\n", "--channels does not apply"),
    ("--time_budget_s=10\n", "sets --time_budget_s, which the whole run"),
    ("--warmup=8192\n", "candidate bad: warmup"),
])
def test_a_bad_family_is_refused_naming_it(text, message, tmp_path):
  bad = (_family(tmp_path, "bad.flags", text) if text is not None
         else f"@{tmp_path / 'bad.flags'}")
  cfg = _config(audition=f"learning_rate=0.1|{bad}")
  with pytest.raises(ValueError, match=message) as refused:
    pipeline.run(cfg, str(tmp_path / "run"))
  assert "bad" in str(refused.value)
  assert not os.path.exists(tmp_path / "run")  # nothing written


def test_two_workers_train_side_by_side_in_children(tmp_path):
  # Two tiny jobs on two workers: each a child process on its own core.
  jobs = [audition_workers.Job(label, _config(audition="",
                                              learning_rate=rate),
                               str(tmp_path / "audition" / label), 1e-6)
          for label, rate in (("a", 0.1), ("b", 0.0))]
  results = audition_workers.train_all(jobs, 2)
  for job in jobs:
    rows = _rows(job.folder)
    assert len(rows) == 1
    assert results[job.label][0] == rows[0]["val1_esr"]
    assert results[job.label][1] >= rows[0]["elapsed_s"]
    assert os.path.exists(job.folder + ".log")  # the child's log
  assert not list((tmp_path / "audition").glob("*.json"))  # specs removed


def test_a_candidate_may_change_other_settings_or_several():
  runs = audition.candidates(_config(
      audition="dynamics_width=0|8|residual_channels=4,learning_rate=0.5",
      model="wiener", model_kwargs={"shaper_width": 4}))
  assert [label for label, _ in runs] == [
      "dynamics_width=0", "dynamics_width=8",
      "residual_channels=4,learning_rate=0.5"]
  last = runs[-1][1]
  assert last.model_kwargs == {"shaper_width": 4, "residual_channels": 4}
  assert last.learning_rate == 0.5
  assert runs[1][1].model_kwargs == {"shaper_width": 4, "dynamics_width": 8}


@pytest.mark.parametrize("spec, changes, message", [
    ("learning_rate", {}, "NAME=V1"),
    ("learning_rate=0.1", {}, "two or more alternatives"),
    ("0|0.1", {}, "NAME=V1"),
    ("learning_rate=0||0.1", {}, "NAME=V1"),
    ("learning_rate=0.1|0.10", {}, "names learning_rate=0.1 twice"),
    ("learning_rate=0|@", {}, "does not exist"),
    ("hidden_size=2|4", {}, "neither a run setting"),
    ("train_seconds=1|2", {}, "cannot try train_seconds: the whole run"),
    ("learning_rate=fast|0.1", {}, "'fast' is not a value of learning_rate"),
    ("warmup=1024|8192", {}, "candidate warmup=8192: warmup"),
    ("learning_rate=0|0.1", {"time_budget_s": 10., "audition_s": 5.},
     "raise it above 10"),
    ("learning_rate=0|0.1|0.2|0.3", {"time_budget_s": 4., "audition_s": 1.,
                                     "audition_workers": 2},
     "raise it above 4"),
])
def test_a_malformed_audition_is_refused_naming_the_fix(spec, changes,
                                                        message, tmp_path):
  cfg = _config(audition=spec, **changes)
  with pytest.raises(ValueError, match=message):
    pipeline.run(cfg, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # nothing written


def _recipe(tmp_path, name):
  """experiments/NAME with a recording pair, as a Config."""
  recipe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "experiments", name)
  (tmp_path / "with_pair.flags").write_text(
      f"--flagfile={recipe}\n--train_input=in.wav\n--train_target=rec.wav\n")
  return cli.config_from_flagfile(str(tmp_path / "with_pair.flags"))


def test_the_capture_recipe_auditions_the_models_readme_names(tmp_path):
  runs = audition.candidates(_recipe(tmp_path, "capture.flags"))
  # README's capture table: 79, 109 and 4,385 parameters.
  assert [(label, pipeline.parameter_count(c)) for label, c in runs] == [
      ("dynamics_width=0", 79), ("dynamics_width=8", 109),
      ("residual_channels=8", 4385)]


def test_the_family_recipe_auditions_the_families_readme_names(tmp_path):
  cfg = _recipe(tmp_path, "capture_families.flags")
  runs = audition.candidates(cfg)
  # README's capture table: 79, 109, 4,385, 13,801 and 2,521 parameters.
  assert [(label, pipeline.parameter_count(c)) for label, c in runs] == [
      ("wiener", 79), ("wiener_compressor", 109), ("wiener_residual", 4385),
      ("nam_wavenet", 13801), ("lstm", 2521)]
  nam = dict(runs)["nam_wavenet"]  # the plugin recipe's training settings
  assert (nam.segment_length, nam.warmup, nam.batch_size, nam.learning_rate,
          nam.grad_clip) == (12288, 4096, 8, 4e-3, 1.0)
  # Five candidates on two workers: at most a third of the 10 minutes.
  assert audition.planned_wall_s(len(runs), cfg.audition_s, 2) <= (
      cfg.time_budget_s / 3)


def test_the_best_of_each_kind_goes_on_where_the_half_has_room():
  kinds = {"wiener": "grey", "wiener_compressor": "grey",
           "wiener_residual": "grey", "nam_wavenet": "black", "lstm": "black"}
  # The tube amp's first round: two grey boxes lead, the WaveNet is third
  ranked = ["wiener", "wiener_compressor", "nam_wavenet", "wiener_residual",
            "lstm"]
  assert audition.keep(ranked, kinds, 2) == ["wiener", "nam_wavenet"]
  assert audition.keep(ranked, kinds, 3) == ["wiener", "wiener_compressor",
                                             "nam_wavenet"]
  # one to keep: the best; one kind: the better half by rank
  assert audition.keep(ranked, kinds, 1) == ["wiener"]
  same = {k: "grey" for k in kinds}
  assert audition.keep(ranked, same, 2) == ["wiener", "wiener_compressor"]
  # and the kind of a family is its model's
  cfg = config_lib.Config(model="nam_wavenet")
  assert audition.kind(cfg) == "black"
  assert audition.kind(cfg.replace(model="wiener")) == "grey"


def test_the_hour_recipe_is_the_family_recipe_with_a_longer_audition(
    tmp_path):
  ten = _recipe(tmp_path, "capture_families.flags")
  hour = _recipe(tmp_path, "capture_families_60.flags")
  assert hour.differences(ten).keys() == {"audition_s", "time_budget_s"}
  assert (hour.time_budget_s, hour.audition_s) == (3600., 120.)
  # Five candidates on two workers: a sixth of the hour, as planned.
  assert audition.planned_wall_s(5, hour.audition_s, 2) == 3600. / 6


def test_on_two_cores_the_last_two_race_and_the_runner_up_can_play(
    tmp_path, monkeypatch):
  # Given two candidates, two workers and two cores (the children's path
  # replaced by the same training in this process, its jobs recorded)
  jobs = []
  def in_process(batch, count, overwrite=False, dataset=None):
    assert count == 2
    jobs.extend(batch)
    return {job.label: audition_workers.train_one(job, overwrite, dataset)
            for job in batch}
  monkeypatch.setattr(audition_workers, "train_all", in_process)
  monkeypatch.setattr(audition.parallel, "usable_cores", lambda: 2)
  lstm = _family(tmp_path, "lstm.flags",
                 "--model=lstm\n--hidden_size=4\n--learning_rate=0\n")
  cfg = _config(audition=f"{lstm}|learning_rate=0.1", audition_workers=2,
                time_budget_s=300., plugin_seconds=0)
  assert audition.races(cfg, 2)
  # not where one would wait for a worker, nor with a core left idle
  assert not audition.races(cfg.replace(audition_workers=1), 2)
  assert not audition.races(cfg, 3)  # three candidates, one round
  assert not audition.races(cfg.replace(time_budget_s=0.), 2)
  with monkeypatch.context() as more:
    more.setattr(audition.parallel, "usable_cores", lambda: 4)
    assert not audition.races(cfg.replace(audition_workers=4), 2)
  path = str(tmp_path / "run")
  report = pipeline.run(cfg, path)
  # Then the one round is the race: both train to the budget's end (here
  # max_epochs comes first), and the better at the end is the model
  choice = workdir.read_json(path, workdir.AUDITION_CHOICE)
  (race,) = choice["rounds"]
  assert race["race"] and race["seconds"] == 300.
  assert sorted(job.until_s for job in jobs) == [300., 300.]
  folder = os.path.join(path, workdir.AUDITION, "lstm")
  scores = race["val1_esr"]
  assert len(_rows(folder)) == 3 and report["epochs"] == 3
  assert choice["chosen"] == min(scores, key=scores.get) == (
      "learning_rate=0.1")
  assert len(_rows(path)) == 3  # the winner trained no further
  # The runner-up, trained as long, is named for its plugin file
  assert audition.runner_up(path) == ("lstm", folder, scores["lstm"])
  assert audition.runner_up(folder) is None  # no audition there
  # and, where the model has no .nam of its own (an LRU) and the runner-up
  # is within 1.5x of its val1 ESR, the capture's plugin file is the
  # runner-up's exactly: it plays as the runner-up's run does
  report = workdir.read_json(path, workdir.REPORT)
  report["val1"]["esr"] = scores["lstm"] / 1.4
  entry = playable.write(workdir.read_config(path).replace(
      plugin_seconds=120.), path, train.fit(workdir.read_config(path), path),
                         report)
  assert (entry["how"], entry["runner_up"]) == ("runner_up", "lstm"), entry
  nam = playable.file_path(path)
  x = np.random.default_rng(0).uniform(-0.5, 0.5, 4000).astype(np.float32)
  y_file = apply_lib.play(*apply_lib.load_model(model_file=nam)[:2], x)
  y_run = apply_lib.play(*apply_lib.load_model(workdir=folder)[:2], x)
  assert np.max(np.abs(y_file - y_run)) <= 1e-5
  assert np.std(y_run) > 1e-3  # a signal
  # past 1.5x: none (the model is distilled instead)
  assert playable._runner_up(  # pylint: disable=protected-access
      path, {"val1": {"esr": scores["lstm"] / 1.6}},
      workdir.sample_rate_of(path), "why") == (None, None)
