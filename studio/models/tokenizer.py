"""A small byte-level BPE tokenizer, built locally, that covers Chinese and English.

Byte-level BPE (as Qwen's own tokenizer is) means no input is ever unknown; merges are learned
from a fixed bilingual corpus so the same vocabulary comes out on every machine.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_TOKEN = "<|endoftext|>"

# Qwen3's chat-template shape, reduced to what the Z-Image pipeline asks for.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

COLORS = {
    "red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "white": "白色", "black": "黑色",
    "orange": "橙色", "purple": "紫色", "pink": "粉色", "gray": "灰色", "cyan": "青色", "brown": "棕色",
}
SHAPES = {
    "circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形", "ring": "圆环",
    "cross": "十字", "diamond": "菱形", "heart": "心形",
}
EXTRA_WORDS = (
    "a an the on of in with at top bottom left right center middle small large big background "
    "image picture photo of drawing 上 的 在 背景 小 大 左 右 中间 一个 图片 画 一只 猫 狗 山 水 "
    "风景 城市 夜晚 日落 海 花 树 人 女孩 男孩 shapes colors 的图片 cat dog mountain sunset sea "
    "flower tree city night girl boy portrait landscape style photo realistic"
)


def corpus() -> list[str]:
    """The fixed training text: shape captions in both languages plus common words."""
    lines = [EXTRA_WORDS]
    for en_c, zh_c in COLORS.items():
        for en_s, zh_s in SHAPES.items():
            for en_b, zh_b in COLORS.items():
                if en_b != en_c:
                    lines.append(f"a {en_c} {en_s} on a {en_b} background")
                    lines.append(f"{zh_b}背景上的{zh_c}{zh_s}")
    return lines


def build_tokenizer(vocab_size: int = 1024) -> Tokenizer:
    """Train the byte-level BPE deterministically on `corpus()`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
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
