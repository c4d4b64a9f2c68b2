"""sga.gpu_plan: the H100 calibration points, invariants, the 12 GB fitting rule and from_config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sga import gpu_plan
from sga.gpu_plan import (LLAMA2_7B, LLAMA32_1B, OPT_2_7B, ModelShape, StepShape, estimate_run_hours,
                          estimate_step_seconds, fit_message, largest_forward_that_fits, plan_memory, steps_per_run)

MEASURED = Path(__file__).resolve().parents[1] / "perf" / "results" / "gpu_h100_qlora_7b.json"
PAPER = StepShape()  # NF4 + double quant, bf16 compute, LoRA r=16 all-linear, checkpointing, AdamW, 512 tokens


def measured_runs() -> dict[tuple, dict]:
    report = json.loads(MEASURED.read_text())
    return {(r["method"], r["sequences_per_step"], r["forget_per_forward"]): r for r in report["runs"]}


def step_of(run: dict) -> StepShape:
    """The step a measured run took: 4 forget samples per step (1 for the 1 x 512 GA run), split per forward."""
    per_forget = 4 if run["method"] == "sga" else 1
    batch = run["sequences_per_step"] // per_forget
    return StepShape.for_unlearning(batch, run["forget_per_forward"], per_forget, run["tokens_per_sequence"])


def test_weights_with_lora_within_10_percent():
    report = json.loads(MEASURED.read_text())
    plan = plan_memory(LLAMA2_7B, PAPER)
    predicted = plan.base_weights_gib + plan.lora_params_gib
    assert predicted == pytest.approx(report["weights_gib_4bit_with_lora"], rel=0.10)
    assert LLAMA2_7B.n_params == report["parameters"]
    assert LLAMA2_7B.lora_params(16) == report["lora_parameters"]


@pytest.mark.parametrize("key, shape", [
    (("ga", 1, None), (1, 1)),  # GA 1 x 512: 5.11 GiB
    (("ga", 4, None), (4, 1)),  # GA 4 x 512: 6.44 GiB
    (("sga", 16, None), (16, 1)),  # SGA K=4 fused, 16 x 512: 11.91 GiB
    (("sga", 16, 1), (4, 4)),  # SGA K=4 micro-batched, 4 forwards of 4 x 512: 6.58 GiB
])
def test_measured_step_peaks_within_10_percent(key, shape):
    run = measured_runs()[key]
    step = step_of(run)
    assert (step.sequences_per_forward, step.forwards_per_step) == shape
    assert plan_memory(LLAMA2_7B, step).total_gib == pytest.approx(run["peak_gib"], rel=0.10)


def test_held_out_1024_token_points_and_times_are_close():
    # an earlier run on the same machine type (not fitted): GA 4 x 1024 8.18 GiB 0.94 s, SGA fused 16 x 1024 18.90 GiB 3.49 s
    for n, gib, seconds in ((4, 8.18, 0.94), (16, 18.90, 3.49)):
        step = PAPER.replace(sequences_per_forward=n, tokens_per_sequence=1024)
        assert plan_memory(LLAMA2_7B, step).total_gib == pytest.approx(gib, rel=0.05)
        assert estimate_step_seconds(LLAMA2_7B, step) == pytest.approx(seconds, rel=0.25)
    for run in measured_runs().values():  # the calibration times, within 25%
        assert estimate_step_seconds(LLAMA2_7B, step_of(run)) == pytest.approx(run["s_per_step"], rel=0.25)


@pytest.mark.parametrize("model", [LLAMA2_7B, OPT_2_7B, LLAMA32_1B])
def test_memory_and_time_never_fall_with_more_sequences_or_tokens(model):
    for ckpt in (True, False):
        base = PAPER.replace(gradient_checkpointing=ckpt)
        for field, values in (("sequences_per_forward", [1, 2, 3, 5, 8, 16]), ("tokens_per_sequence", [64, 128, 512, 1000, 2048]),
                              ("forwards_per_step", [1, 2, 4])):
            plans = [plan_memory(model, base.replace(**{field: v})).total_gib for v in values]
            times = [estimate_step_seconds(model, base.replace(**{field: v})) for v in values]
            assert plans == sorted(plans), (field, plans)
            assert times == sorted(times), (field, times)


@pytest.mark.parametrize("model", [LLAMA2_7B, OPT_2_7B, LLAMA32_1B])
def test_checkpointing_lowers_memory_and_nf4_weights_are_smaller(model):
    step = PAPER.replace(sequences_per_forward=4)
    with_ckpt, without = plan_memory(model, step), plan_memory(model, step.replace(gradient_checkpointing=False))
    assert with_ckpt.total_gib < without.total_gib
    assert estimate_step_seconds(model, step) >= estimate_step_seconds(model, step.replace(gradient_checkpointing=False))
    nf4 = plan_memory(model, step).base_weights_gib
    no_dq = plan_memory(model, step.replace(double_quant=False)).base_weights_gib
    int8 = plan_memory(model, step.replace(quantization="int8")).base_weights_gib
    bf16 = plan_memory(model, step.replace(quantization="none")).base_weights_gib
    assert nf4 < no_dq < int8 < bf16
    assert bf16 == pytest.approx(model.n_params * 2 / 2**30)


def test_total_is_the_static_terms_plus_the_larger_transient():
    plan = plan_memory(OPT_2_7B, PAPER.replace(sequences_per_forward=4, forwards_per_step=2))
    static = (plan.base_weights_gib + plan.lora_params_gib + plan.lora_grads_gib + plan.optimizer_states_gib
              + plan.overhead_gib + plan.activations_gib)
    assert plan.total_gib == pytest.approx(static + max(plan.layer_working_gib, plan.logits_gib))
    assert plan.lora_grads_gib == pytest.approx(plan.lora_params_gib)
    assert plan.optimizer_states_gib == pytest.approx(2 * plan.lora_params_gib)
    assert plan.peak_phase == "logits"  # a 50272-word vocabulary outweighs one OPT layer
    assert plan.device_gib > plan.total_gib


def test_a_reference_forward_adds_logits_and_time():
    pairs = PAPER.replace(sequences_per_forward=2, tokens_per_sequence=1024)  # GradDiff / NPO: forget + retain
    npo = pairs.replace(reference_sequences=1)
    assert plan_memory(OPT_2_7B, npo).logits_gib > plan_memory(OPT_2_7B, pairs).logits_gib
    assert estimate_step_seconds(OPT_2_7B, npo) > estimate_step_seconds(OPT_2_7B, pairs)
    assert largest_forward_that_fits(OPT_2_7B, pairs, 12, 2, reference_per_sample=1) <= largest_forward_that_fits(OPT_2_7B, pairs, 12, 2)


def test_largest_forward_on_12_gb():
    # measured (allocated): 16 x 512 sequences 11.91 GiB, 4 x 512 6.44: about 0.456 GiB per 512-token sequence;
    # with the CUDA context and allocator headroom a 12 GB card takes 13 GA sequences (~10.5 GiB allocated) but
    # not 14 (~11.0 GiB), and 3 SGA K=4 forget samples per forward (12 sequences) but not 4 (the 11.91 GiB step)
    assert largest_forward_that_fits(LLAMA2_7B, PAPER, 12, sequences_per_sample=1) == 13
    assert largest_forward_that_fits(LLAMA2_7B, PAPER, 12, sequences_per_sample=4) == 3
    assert largest_forward_that_fits(LLAMA2_7B, PAPER.replace(forwards_per_step=4), 12, sequences_per_sample=4) == 3
    # the MUSE preset's plan: one forget chunk of 2049 tokens with K-1 = 1 normal chunk per forward fits, K=4 does not
    muse = PAPER.replace(tokens_per_sequence=2049, forwards_per_step=32)
    assert largest_forward_that_fits(LLAMA2_7B, muse, 12, sequences_per_sample=2) == 1
    assert largest_forward_that_fits(LLAMA2_7B, muse, 12, sequences_per_sample=4) is None
    # a larger card takes more; an 80 GB one many
    assert largest_forward_that_fits(LLAMA2_7B, PAPER, 24, 4) > 3
    assert largest_forward_that_fits(LLAMA2_7B, PAPER, 80, 1) > 100


def test_impossible_setting_gives_none_and_a_message_that_names_what_fits():
    long = PAPER.replace(tokens_per_sequence=8192)
    assert largest_forward_that_fits(LLAMA2_7B, long, 12, sequences_per_sample=4) is None
    message = fit_message(LLAMA2_7B, long, 12, sequences_per_sample=4)
    assert "does not fit" in message and "sequences of at most" in message
    longest = int(message.split("sequences of at most ")[1].split()[0])
    assert 1000 < longest < 8192
    assert largest_forward_that_fits(LLAMA2_7B, long.replace(tokens_per_sequence=longest), 12, 4) == 1
    assert largest_forward_that_fits(LLAMA2_7B, long.replace(tokens_per_sequence=longest + 1), 12, 4) is None
    # an unquantised 7B (12.6 GiB of bf16 weights) never fits 12 GB: the message points to NF4
    bf16 = PAPER.replace(quantization="none")
    assert largest_forward_that_fits(LLAMA2_7B, bf16, 12) is None
    assert "nf4" in fit_message(LLAMA2_7B, bf16, 12)
    assert "smaller K" in fit_message(LLAMA2_7B, PAPER.replace(tokens_per_sequence=2049), 12, sequences_per_sample=4)
    assert fit_message(LLAMA2_7B, PAPER, 12, 4).startswith("Up to 3 sample(s)")


def test_from_config_on_a_llama_config():
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=32)
    shape = ModelShape.from_config(config)
    assert shape.n_params == pytest.approx(6.74e9, rel=0.01)
    assert shape.n_params == 6_738_415_616  # sum(p.numel()) of LlamaForCausalLM(config)
    assert ModelShape.from_config(config.to_dict()) == shape
    assert plan_memory(shape, PAPER) == plan_memory(LLAMA2_7B, PAPER)


def test_from_config_on_opt_and_a_tied_gqa_llama():
    from transformers import LlamaConfig, OPTConfig

    opt = ModelShape.from_config(OPTConfig(vocab_size=50272, hidden_size=2560, num_hidden_layers=32, ffn_dim=10240,
                                           num_attention_heads=32, word_embed_proj_dim=2560))
    assert opt == OPT_2_7B and opt.n_params == 2_651_596_800  # facebook/opt-2.7b
    small = ModelShape.from_config(LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                               num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                                               tie_word_embeddings=True, max_position_embeddings=131072))
    assert small == LLAMA32_1B and small.n_params == 1_235_814_400  # meta-llama/Llama-3.2-1B
    assert small.lora_params(16) == 16 * 16 * (2 * (2048 + 2048) + 2 * (2048 + 512) + 3 * (2048 + 8192))


def test_run_hours_and_steps():
    assert steps_per_run(100, 32, epochs=5) == 20
    step = StepShape.for_unlearning(32, 1, 2, 2049)
    assert (step.sequences_per_forward, step.forwards_per_step) == (2, 32)
    hours = estimate_run_hours(LLAMA2_7B, step, steps=20)
    assert hours == pytest.approx(20 * estimate_step_seconds(LLAMA2_7B, step) / 3600)
    assert estimate_step_seconds(LLAMA2_7B, step, "rtx3060") > estimate_step_seconds(LLAMA2_7B, step, "a100") > \
        estimate_step_seconds(LLAMA2_7B, step, "h100")


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="quantization"):
        StepShape(quantization="nf3")
    with pytest.raises(ValueError, match="sequences_per_forward"):
        StepShape(sequences_per_forward=0)
    with pytest.raises(ValueError, match="device"):
        estimate_step_seconds(LLAMA2_7B, PAPER, "tpu")
    with pytest.raises(ValueError, match="arch"):
        ModelShape(8, 1, 2, 2, 16, 10, arch="gpt2")
    assert StepShape(lora_targets=["q_proj", "v_proj"]).lora_targets == ("q_proj", "v_proj")
    assert LLAMA2_7B.lora_params(16, ["q_proj", "v_proj"]) == 32 * 2 * 16 * 8192
    assert gpu_plan.GIB == 2**30


def test_a_run_spec_gives_its_step():
    """The memory plan is a function of the run's spec: its method's sequences, its micro-batches, its LoRA."""
    from sga.presets import resolve

    paper = resolve("tofu", "paper")  # 32 forget samples per step in micro-batches of 4, 512 tokens, LoRA r=16
    sga_step = gpu_plan.run_step(paper.run("sga"))
    assert (sga_step.sequences_per_forward, sga_step.forwards_per_step, sga_step.tokens_per_sequence) == (4 * 4, 8, 512)
    assert (sga_step.lora_rank, sga_step.compute_dtype, sga_step.gradient_checkpointing) == (16, "bfloat16", True)
    assert gpu_plan.run_step(paper.run("ga")).sequences_per_forward == 4
    assert gpu_plan.run_step(paper.run("npo")).reference_sequences == 4 and gpu_plan.run_step(paper.run("kl")).reference_sequences == 4
    assert gpu_plan.run_step(paper.run("graddiff", forget_per_forward="none")).sequences_per_forward == 2 * 32
    fused = gpu_plan.plan_memory(gpu_plan.LLAMA2_7B, gpu_plan.run_step(paper.run("sga", batch_size=4, forget_per_forward=4)))
    assert fused.total_gib == pytest.approx(11.91, rel=0.1)  # the measured fused SGA K=4 step, 16 x 512
    with pytest.raises(ValueError, match="no training step"):
        gpu_plan.run_step(paper.reference("target"))


def test_a_run_takes_the_largest_forget_per_forward_that_fits_the_card():
    from sga.presets import resolve

    paper = resolve("tofu", "paper")  # batch 32, 512 tokens, micro-batches of 4 forget samples
    sga_run, line = gpu_plan.fit_run(paper.run("sga"), LLAMA2_7B, 12)
    assert sga_run.training.forget_per_forward == 3 and line.startswith("GPU plan for sga: 11 forward(s) of 12 x 512 tokens")
    assert sga_run.name() != paper.run("sga").name()  # the micro-batching is part of the run's identity
    assert gpu_plan.fit_run(paper.run("ga"), LLAMA2_7B, 12)[0].training.forget_per_forward == 13
    assert gpu_plan.fit_run(paper.run("ga"), LLAMA2_7B, 80)[0].training.forget_per_forward == 32  # at most the batch
    assert gpu_plan.fit_run(paper.run("sga"), LLAMA2_7B)[0] == paper.run("sga")  # no card size: the run as it is
    with pytest.raises(ValueError, match=r"sga: Even one sample of 4 x 512 tokens does not fit 4 GB.*What would fit"):
        gpu_plan.fit_run(paper.run("sga"), LLAMA2_7B, 4)


def test_a_world_of_a_local_model_plans_each_run_from_its_config(tmp_path):
    """experiment.fitted reads the target's config.json; the embedded tiny models are run as they are."""
    from types import SimpleNamespace

    from transformers import LlamaConfig

    from sga.experiment import fitted
    from sga.presets import resolve

    LlamaConfig(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                intermediate_size=11008, vocab_size=32000).save_pretrained(tmp_path)
    settings = resolve("tofu", "paper", data_source=str(tmp_path), target_model=str(tmp_path), retain_model=str(tmp_path), gpu_memory_gb=12)
    world = SimpleNamespace(spec=settings.world, settings=settings, models={"target": str(tmp_path)})
    run, line = fitted(world, settings.run("sga"))
    assert run.training.forget_per_forward == 3 and "GPU plan for sga" in line
    embedded = resolve("tofu", "mini", gpu_memory_gb=12)
    tiny = SimpleNamespace(spec=embedded.world, settings=embedded, models={"target": "unused"})
    assert fitted(tiny, embedded.run("sga")) == (embedded.run("sga"), None)
    assert fitted(world, settings.reference("target")) == (settings.reference("target"), None)


def test_paper_run_steps_and_hours_and_notebook_02s_runs():
    """A TOFU paper run takes epochs x ceil(400 / batch_size) steps (max_steps cuts it), each its spec's step;
    perf/gpu_hours.py counts notebook 02's runs so: the GA scan's epochs once, the budget's for the 17 others."""
    import importlib.util

    from sga.presets import resolve

    paper = resolve("tofu", "paper")
    run = paper.run("sga")
    steps = paper.training.epochs * -(-400 // paper.training.batch_size)
    assert gpu_plan.run_steps(run, 400) == steps == 5 * 13
    assert gpu_plan.run_steps(paper.run("ga", max_steps=20), 400) == 20
    seconds = estimate_step_seconds(LLAMA2_7B, gpu_plan.run_step(run))
    assert gpu_plan.run_hours(run, LLAMA2_7B, 400) == pytest.approx(steps * seconds / 3600)
    assert gpu_plan.run_hours(run, LLAMA2_7B, 400, steps=1) == pytest.approx(seconds / 3600)
    spec = importlib.util.spec_from_file_location("gpu_hours", Path(__file__).resolve().parents[1] / "perf" / "gpu_hours.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    runs = script.notebook_runs(paper)
    assert sorted(gpu_plan.run_steps(r, 400) for r in runs) == [steps] * 17 + [paper.plan.budget_scan_epochs * 13]
    assert script.row("02", "tofu", runs)[2:4] == (18, 17 * steps + 6 * 13)
