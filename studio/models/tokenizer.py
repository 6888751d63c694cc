"""A small byte-level BPE tokenizer, built locally, that covers Chinese and English.

Byte-level BPE (as Qwen's own tokenizer is) means no input is ever unknown; merges are learned
from a fixed bilingual corpus so the same vocabulary comes out on every machine.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_TOKEN = "<|endoftext|>"
CJK = r"[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]"

# Qwen3's chat-template shape, reduced to what the Z-Image pipeline asks for.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

EXTRA_WORDS = (
    "user assistant a an the on of in with at top bottom left right center middle small large big "
    "background image picture photo drawing 上 的 在 背景 小 大 左 右 中间 一个 图片 画 一只 猫 狗 山 水 "
    "风景 城市 夜晚 日落 海 花 树 人 女孩 男孩 shapes colors 的图片 cat dog mountain sunset sea "
    "flower tree city night girl boy portrait landscape style photo realistic"
)


def corpus() -> list[str]:
    """The fixed training text: the demo model's captions in both languages plus common words."""
    from studio.models.shapes import caption_corpus

    # The chat template's own words, often enough that they merge into single tokens.
    return [EXTRA_WORDS, *(["user\n", "assistant\n"] * 200), *caption_corpus()]


def build_tokenizer(vocab_size: int = 1024) -> Tokenizer:
    """Train the byte-level BPE deterministically on `corpus()`."""
    tok = Tokenizer(models.BPE())
    # Each Chinese character is its own word before byte-level BPE: merges then stop at characters,
    # so "红色" + "星形" never fuse into one token the demo model might never have seen trained.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CJK), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    return tok


def save_tokenizer(folder: Path, vocab_size: int = 1024) -> int:
    """Write a transformers-loadable tokenizer folder with the chat template; returns its vocab size."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(vocab_size),
        pad_token=PAD_TOKEN,
        eos_token="<|im_end|>",
        unk_token=None,
        model_max_length=1024,
    )
    fast.chat_template = CHAT_TEMPLATE
    folder.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(folder))
    return len(fast)
