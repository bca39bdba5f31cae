"""The file MLflow runs to load midigen's pyfunc model ("models from code": no pickle)."""

from mlflow.models import set_model

from midigen.training.pyfunc import MidigenModel

set_model(MidigenModel())
