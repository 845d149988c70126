import type { RemoteNodeConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { resolveRemoteNodeAuth } from '../../src/secrets.js';

const node = (name: string, auth: RemoteNodeConfig['auth']) => ({ name, auth }) as RemoteNodeConfig;

describe('resolveRemoteNodeAuth', () => {
  it('reads the variables the configuration names', () => {
    const auth = resolveRemoteNodeAuth(
      {
        remoteNodes: [
          node('a', { type: 'basic', username: 'u', passwordEnv: 'PW_A' }),
          node('b', { type: 'bearer', tokenEnv: 'TOKEN_B' }),
          node('c', { type: 'none' }),
        ],
      },
      { PW_A: 'secret-a', TOKEN_B: 'secret-b' },
    );
    expect(auth.get('a')).toEqual({ type: 'basic', username: 'u', password: 'secret-a' });
    expect(auth.get('b')).toEqual({ type: 'bearer', token: 'secret-b' });
    expect(auth.get('c')).toBeUndefined();
  });

  it('reports every missing secret with its configuration path, and no value', () => {
    let err: unknown;
    try {
      resolveRemoteNodeAuth(
        {
          remoteNodes: [
            node('a', { type: 'basic', username: 'u', passwordEnv: 'PW_A' }),
            node('b', { type: 'bearer', tokenEnv: 'TOKEN_B' }),
          ],
        },
        { TOKEN_B: '' },
      );
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([
      'remoteNodes[0].auth.passwordEnv: environment variable PW_A is not set',
      'remoteNodes[1].auth.tokenEnv: environment variable TOKEN_B is empty',
    ]);
  });
});
