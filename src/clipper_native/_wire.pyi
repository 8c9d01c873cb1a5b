def encode_string_vector_message(header: bytes, outputs: list[str]) -> bytes:
    """`header` (everything before the outputs vector, confidences included) followed by a
    flatbuffers [string] vector of `outputs`, laid out as clipper.container.codec does; TypeError
    for a non-str output, UnicodeEncodeError for a lone surrogate."""
