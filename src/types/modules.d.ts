// Minimal ambient declarations for untyped packages; each consumer narrows what it uses.
declare module 'dcmjs';
declare module 'dcmjs-codecs';
declare module 'jpeg-lossless-decoder-js';
