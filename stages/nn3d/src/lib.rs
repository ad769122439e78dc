//! 3D deep learning on candle: conv3d, pooling, resize, U-Net, losses, optimisers, sliding window.
