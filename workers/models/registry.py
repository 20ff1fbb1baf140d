"""Which model class runs which architecture."""

from workers.model_config import GEMMA_ARCHITECTURES, ModelConfig
from workers.models.gemma import GemmaForCausalLM
from workers.models.llama import LlamaForCausalLM


def model_class(config: ModelConfig) -> type[LlamaForCausalLM]:
    # Llama, Mistral, Qwen 2/3 and Phi differ only in flags the Llama layers read; Gemma's layer is its own
    return GemmaForCausalLM if config.architecture in GEMMA_ARCHITECTURES else LlamaForCausalLM
