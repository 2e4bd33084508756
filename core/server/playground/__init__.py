"""``avaluma playground``: a local web page to see and hear an avatar live, over real WebRTC (aiortc), no LiveKit."""
