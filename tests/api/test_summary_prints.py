"""model.summary() prints the table (in a script too) and returns None, as Keras does, so a
REPL shows it once; describe() returns it as a ModelSummary; print_fn gets each line."""
from fastmlp import Dense, ModelSummary, MultiTask, Sequential


def _sequential():
    return Sequential([Dense(4, "relu"), Dense(2)], input_dim=3, backend="numpy", seed=0)


def _multitask():
    return MultiTask([Dense(4, "relu")], {"a": [Dense(2)], "b": [Dense(1)]},
                     losses={"a": "softmax_cross_entropy", "b": "mse"}, input_dim=3,
                     backend="numpy", seed=0)


def test_summary_prints_the_table_and_returns_none(capsys):
    for model in (_sequential(), _multitask()):
        assert model.summary() is None
        printed = capsys.readouterr().out
        assert printed == str(model.describe()) + "\n"
        assert f"total params: {model.n_params}" in printed


def test_describe_returns_the_summary_object():
    summary = _sequential().describe()
    assert isinstance(summary, ModelSummary)
    assert [row.params for row in summary.layers] == [16, 10]


def test_summary_print_fn_gets_each_line(capsys):
    model = _sequential()
    lines = []
    model.summary(print_fn=lines.append)
    assert lines == str(model.describe()).splitlines()
    assert capsys.readouterr().out == ""
