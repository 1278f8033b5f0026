"""tools/nb.py's `settle`: what `execute` stores is the final state of each output, no progress frames."""
import importlib.util
from pathlib import Path

import nbformat

spec = importlib.util.spec_from_file_location("nb_tool", Path(__file__).resolve().parents[1] / "tools" / "nb.py")
nb_tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nb_tool)


def cell_with(*outputs):
    cell = nbformat.v4.new_code_cell("train()")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return nbformat.v4.new_notebook(cells=[cell])


def test_a_console_bar_keeps_its_last_frame_and_a_widget_bar_goes():
    bar = {"output_type": "display_data", "metadata": {},
           "data": {nb_tool.WIDGET_VIEW: {"model_id": "cb30", "version_major": 2, "version_minor": 0},
                    "text/plain": "epochs:   0%|          | 0/30 [00:00<?, ?it/s]"}}
    nb = cell_with(bar,
                   {"output_type": "stream", "name": "stderr", "text": "epochs:   0%|  | 0/2\r"},
                   {"output_type": "stream", "name": "stderr", "text": "epochs:  50%|# | 1/2\repochs: 100%|##| 2/2\n"},
                   {"output_type": "stream", "name": "stdout", "text": "trained in 14.8 s\n"},
                   {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "a figure"}})
    nb_tool.settle(nb)
    assert [dict(o) for o in nb.cells[0].outputs] == [
        {"output_type": "stream", "name": "stderr", "text": "epochs: 100%|##| 2/2\n"},
        {"output_type": "stream", "name": "stdout", "text": "trained in 14.8 s\n"},
        {"output_type": "display_data", "metadata": {}, "data": {"text/plain": "a figure"}}]


def test_plain_outputs_stay_as_they_are():
    outputs = [{"output_type": "stream", "name": "stdout", "text": "a\nb\n"},
               {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                "data": {"text/plain": "3"}},
               {"output_type": "stream", "name": "stdout", "text": "c\n"}]
    nb = cell_with(*outputs)
    nb_tool.settle(nb)
    assert [dict(o) for o in nb.cells[0].outputs] == outputs
