"""Shared helpers for the EGRU test suite (float64, fixed seeds)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import snntorch_egru as se  # noqa: E402
from snntorch_egru import backends  # noqa: E402

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "threshold")


def backend_names() -> List[str]:
    """Every backend registered when the tests are collected."""
    return backends.available_backends()


def _probe(name: str, x: torch.Tensor, model: se.EGRU, device: torch.device) -> bool:
    p = {k: (v.detach().to(device) if v is not None else None) for k, v in model.layer_tensors(0).items()}
    B = x.shape[1]
    zeros = torch.zeros(B, model.hidden_size, dtype=x.dtype, device=device)
    call = backends.LayerCall(
        x=x.detach().to(device),
        y0=zeros,
        c0=zeros,
        trace0=zeros,
        weight_ih=p["weight_ih"],
        weight_hh=p["weight_hh"],
        bias_ih=p["bias_ih"],
        bias_hh=p["bias_hh"],
        threshold=p["threshold"],
        spike_fn=model.spike_grad,
        reset=model.reset_mechanism,
    )
    return bool(backends.get_backend(name).available(call))


def backend_device(name: str, x: torch.Tensor, model: se.EGRU) -> torch.device:
    """Where backend ``name`` runs a call like ``x`` [T, B, I]: the CPU, else a CUDA GPU if there is
    one and the backend takes it there; skip the test otherwise (e.g. GPU backends on a CPU machine)."""
    if _probe(name, x, model, torch.device("cpu")):
        return torch.device("cpu")
    if torch.cuda.is_available() and _probe(name, x, model, torch.device("cuda")):
        return torch.device("cuda")
    pytest.skip(f"backend {name!r} declines this call here (e.g. needs a GPU)")


def skip_if_unavailable(name: str, x: torch.Tensor, model: se.EGRU) -> None:
    """Skip unless backend ``name`` runs a CPU call like ``x`` [T, B, I]."""
    if not _probe(name, x, model, torch.device("cpu")):
        pytest.skip(f"backend {name!r} declines this call on the CPU (e.g. needs a GPU)")


def on_device(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model`` itself on the CPU, else a deep copy moved to ``device``."""
    import copy

    return model if device.type == "cpu" else copy.deepcopy(model).to(device)


def param_grads(model: torch.nn.Module) -> List[torch.Tensor]:
    """Gradients of ``model``'s parameters, on the CPU (zeros where None)."""
    return [(p.grad if p.grad is not None else torch.zeros_like(p)).detach().cpu().clone() for p in model.parameters()]


def randomize_(
    model: torch.nn.Module, seed: int, w_scale: float = 0.6, thr_low: float = 0.05, thr_high: float = 0.45
) -> None:
    """Give a model (EGRU or EGRUCell) random weights and biases and thresholds in [thr_low, thr_high]."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "threshold" in name:
                p.copy_(thr_low + (thr_high - thr_low) * torch.rand(p.shape, generator=g, dtype=torch.float64))
            elif "weight" in name:
                p.copy_(w_scale * torch.randn(p.shape, generator=g, dtype=torch.float64))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))


def layer_params(model: se.EGRU) -> List[Dict[str, Optional[torch.Tensor]]]:
    """Each layer's five tensors by plain names (the same Parameter objects)."""
    return [{n: getattr(model, f"{n}_l{k}") for n in PARAM_NAMES} for k in range(model.num_layers)]


def cell_params(cell: se.EGRUCell) -> Dict[str, Optional[torch.Tensor]]:
    return {n: getattr(cell, n) for n in PARAM_NAMES}


def grads_of(tensors) -> List[torch.Tensor]:
    return [t.grad.clone() if t.grad is not None else torch.zeros_like(t) for t in tensors]


def clear_grads(tensors) -> None:
    for t in tensors:
        t.grad = None


# -- the fast loop -------------------------------------------------------------------------------
#: Tests that take many seconds each (training runs, torch.compile, sanitizer builds, subprocess
#: fleets). They are marked ``slow``: the default ``python -m pytest`` deselects them (see
#: ``[tool.pytest.ini_options]`` in pyproject.toml), ``python -m pytest -m slow`` runs only them,
#: and ``.ci/run`` runs both. A node id without brackets covers every parametrization.
SLOW_TESTS = frozenset(
    {
        "tests/test_training.py::test_gru_baseline_and_seeds_report_both_with_mean_and_sd",
        "tests/test_training.py::test_default_task_nir_file_reproduces_the_reported_test_count",
        "tests/test_training.py::test_import_does_not_load_training_or_heavy_libraries",
        "tests/test_training.py::test_resume_equals_uninterrupted",
        "tests/test_recipes.py::test_mnist_selects_on_validation_and_tests_the_best_epoch",
        "tests/test_recipes.py::test_smnist_reports_both_protocols",
        "tests/test_recipes.py::test_lm_awd_windows_scale_the_lr_and_the_best_valid_model_is_tested",
        "tests/test_recipes.py::test_smnist_preset_clips_each_layer_before_the_global_clip",
        "tests/test_recipes.py::test_dvs_reports_the_recipes_best_over_epochs_on_test",
        "tests/test_recipes.py::test_dvs_recipe_trains_at_full_resolution",
        "tests/test_operator.py::test_compile_egru_forward_backward_equal_eager_repeatedly",
        "tests/test_operator.py::test_compile_egru_training_options_and_recompiles",
        "tests/test_operator.py::test_onnx_export_runs_in_onnxruntime_equal_to_eager",
        "tests/test_sweep.py::test_a_sweep_stopped_early_says_so_in_every_figure",
        "tests/test_sweep.py::test_a_run_without_matplotlib_says_its_plot_is_missing",
        "tests/test_sweep.py::test_a_gru_made_without_the_egru_only_options_is_reused",
        "tests/test_sweep.py::test_interrupted_target_run_is_continued_and_equals_the_run_alone",
        "tests/test_registration.py::test_norse_own_nir_tests_unchanged_by_registration",
        "tests/test_registration.py::test_norse_is_hooked_when_imported_later_and_not_imported_by_us",
        "tests/test_registration.py::test_opt_out_environment_variable",
        "tests/test_kernel_sanitizers.py",
        "tests/test_native_threads.py",
        "tests/test_distributed.py",
        "tests/test_fault_injection.py",
        "tests/test_kernel_harness.py::test_two_compaction_tiles_and_256_units",
        "tests/test_kernel_harness.py::test_half_weight_storage",
        "tests/test_kernels_compile.py::test_cubin_registers_and_spills_within_budget",
        "tests/test_kernels_compile.py::test_wheel_ships_kernels_and_loader_finds_them",
        "tests/test_hardening_files.py::test_sigkill_during_writes_leaves_a_complete_file",
        "tests/test_docs.py::test_docstring_examples_run",
        "tests/test_citizen_nir.py::test_onnx_export_of_egru_with_dynamic_length_and_batch",
        "tests/test_citizen_nir.py::test_onnx_export_of_egrucell_steps_like_eager",
        "tests/test_citizen_nir.py::test_onnx_export_through_the_strict_capture_runs_the_scan",
        "tests/test_interop.py::test_mixed_leaky_and_egrucell_trains_below_chance",
        "tests/test_sweep.py::test_sweep_with_seeds_and_gru_writes_the_runs_and_their_figures",
        "tests/test_datasets.py::test_mnist_tasks_train_and_evaluate",
        "tests/test_kernel_harness.py::test_grid_barrier_survives_counter_wrap",
        "tests/test_kernel_harness.py::test_persistent_launch_failure_falls_back_to_step_once",
        "tests/test_cli_errors.py::test_debug_shows_the_traceback",
        "tests/test_cli_errors.py::test_ctrl_c_in_a_resumed_run_leaves_no_stale_metrics",
        "tests/test_cell.py::test_cell_in_sequential_with_leaky_trains_with_snntorch_loss",
        "tests/test_cold_start.py::test_kernels_still_run_under_dynamo_once_it_is_loaded",
        "tests/test_train_files.py::test_a_running_train_command_holds_its_folder",
        "tests/test_kernels_compile.py::test_every_kernel_compiles",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: List[pytest.Item]) -> None:
    slow = pytest.mark.slow
    for item in items:
        node = item.nodeid
        if node in SLOW_TESTS or node.split("[")[0] in SLOW_TESTS or node.split("::")[0] in SLOW_TESTS:
            item.add_marker(slow)
