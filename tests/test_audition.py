"""emu.capture.audition: candidates trained briefly, the best one continued in the
run folder, and a clear error for every malformed --audition."""

import json
import os

import pytest

from emu.capture import audition
from emu import cli
from emu import config as config_lib
from emu import pipeline
from emu import workdir


def _config(**changes):
  base = dict(
      model="lru", model_kwargs={"state_size": 1, "num_layers": 1},
      train_seconds=1.5, val1_seconds=0.5, segment_length=4096, warmup=1024,
      batch_size=4, learning_rate=0.1, max_epochs=3, stream_blocks=(),
      # One epoch each: any epoch takes longer than a microsecond.
      audition="learning_rate=0|0.1", audition_s=1e-6)
  base.update(changes)
  return config_lib.Config(**base)


def _rows(folder):
  with open(os.path.join(folder, workdir.METRICS)) as f:
    return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def auditioned(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("audition"))
  return path, pipeline.run(_config(), path)


def test_the_candidate_with_the_lower_val1_is_chosen_and_continued(
    auditioned):
  path, report = auditioned
  folders = {label: os.path.join(path, workdir.AUDITION, label)
             for label in ("learning_rate=0.0", "learning_rate=0.1")}
  scores = {label: _rows(folder)[0]["val1_esr"]
            for label, folder in folders.items()}
  for label, folder in folders.items():
    assert len(_rows(folder)) == 1, label  # one epoch: audition_s
  # A rate of 0 leaves the first weights; 0.1 learns in one epoch.
  assert scores["learning_rate=0.1"] < scores["learning_rate=0.0"]
  choice = workdir.read_json(path, workdir.AUDITION_CHOICE)
  assert choice["chosen"] == "learning_rate=0.1"
  assert choice["val1_esr"] == pytest.approx(scores)
  # The run folder is the chosen candidate's run, trained on (not restarted).
  rows = _rows(path)
  assert len(rows) == 3 and report["epochs"] == 3
  assert rows[0]["val1_esr"] == scores["learning_rate=0.1"]
  chosen = workdir.read_config(path)
  assert chosen.learning_rate == 0.1 and chosen.audition == ""
  assert report["audition"]["chosen"] == "learning_rate=0.1"
  # Training time counts the candidate not chosen (each run's clock also
  # holds its last checkpoint's write, after its last row).
  loser = _rows(folders["learning_rate=0.0"])[-1]["elapsed_s"]
  assert (rows[-1]["elapsed_s"] + loser <= report["train_seconds"]
          <= rows[-1]["elapsed_s"] + loser + 2.)
  assert "audition chose learning_rate=0.1" in pipeline.summary_line(
      path, report)


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


def test_a_run_of_other_settings_in_that_folder_is_refused(auditioned):
  path, _ = auditioned
  with pytest.raises(workdir.WorkdirConflict, match="audition"):
    pipeline.run(_config(audition="learning_rate=0.1|0.2"), path)


def test_the_winner_gets_what_the_budget_leaves():
  runs = audition.candidates(_config(time_budget_s=100., audition_s=10.,
                                     audition="dynamics_width=0|8|16",
                                     model="wiener", model_kwargs={}))
  assert [label for label, _ in runs] == [
      "dynamics_width=0", "dynamics_width=8", "dynamics_width=16"]
  for (_, cfg), width in zip(runs, (0, 8, 16)):
    assert cfg.model_kwargs["dynamics_width"] == width
    assert cfg.time_budget_s == 80. and cfg.audition == ""


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
    ("hidden_size=2|4", {}, "neither a run setting"),
    ("learning_rate=fast|0.1", {}, "'fast' is not a value of learning_rate"),
    ("warmup=1024|8192", {}, "candidate warmup=8192: warmup"),
    ("learning_rate=0|0.1", {"time_budget_s": 10., "audition_s": 5.},
     "raise it above 10"),
])
def test_a_malformed_audition_is_refused_naming_the_fix(spec, changes,
                                                        message, tmp_path):
  cfg = _config(audition=spec, **changes)
  with pytest.raises(ValueError, match=message):
    pipeline.run(cfg, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run")  # nothing written


def test_the_capture_recipe_auditions_the_models_readme_names(tmp_path):
  recipe = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                        "experiments", "capture.flags")
  (tmp_path / "with_pair.flags").write_text(
      f"--flagfile={recipe}\n--train_input=in.wav\n--train_target=rec.wav\n")
  cfg = cli.config_from_flagfile(str(tmp_path / "with_pair.flags"))
  runs = audition.candidates(cfg)
  # README's capture table: 79, 109 and 4,385 parameters.
  assert [(label, pipeline.parameter_count(c)) for label, c in runs] == [
      ("dynamics_width=0", 79), ("dynamics_width=8", 109),
      ("residual_channels=8", 4385)]
  assert all(c.time_budget_s == 400. for _, c in runs)
