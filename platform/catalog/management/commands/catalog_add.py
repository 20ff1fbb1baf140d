"""`python manage.py catalog_add PATH_OR_GGUF --slug S --price-input P --price-output P --price-cached P`"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from catalog.services import base_model_add
from hearth_platform.errors import ApplicationError


class Command(BaseCommand):
    help = (
        "Add a base model to the catalog from its checkpoint (an HF folder or a .gguf file): the engine's loader "
        "checks it can run it, and its architecture, context length and adapter shapes are recorded. Prices are "
        "USD per million tokens. Then start a worker with --model PATH --served-model-name SLUG."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="HF model folder (config.json + *.safetensors) or a .gguf file")
        parser.add_argument("--slug", required=True, help="catalog name: accounts/hearth/models/<slug>")
        parser.add_argument("--price-input", required=True)
        parser.add_argument("--price-output", required=True)
        parser.add_argument("--price-cached", required=True, help="price of prompt tokens served from cache")
        parser.add_argument("--display-name", default="")

    def handle(self, *args: object, **opts: str) -> None:
        try:
            model = base_model_add(
                path=opts["path"], slug=opts["slug"], price_input=opts["price_input"],
                price_output=opts["price_output"], price_cached=opts["price_cached"],
                display_name=opts["display_name"],
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"added {model.public_name}: {model.architecture}, context {model.context_length} tokens, "
            f"${model.price_input_per_mtok}/${model.price_cached_input_per_mtok}/${model.price_output_per_mtok} "
            "per M input/cached/output tokens\n"
            f"start its worker: python -m workers.server --model {model.weights_uri} --served-model-name {model.slug}"
        )
